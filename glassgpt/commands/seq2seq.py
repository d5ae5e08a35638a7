"""`glassgpt seq2seq`: cross-attention at work (T5) — a translator and a fixed-query classifier.

    glassgpt seq2seq train --task digits-to-words --out runs/num2words
    glassgpt seq2seq translate --model runs/num2words 1947 --beam 4 --plot align.png
    glassgpt seq2seq train --task sorted --out runs/sorted
    glassgpt seq2seq train --resume runs/num2words --steps=1200
    glassgpt seq2seq classify --model runs/sorted 1337 1373 --plot queries.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import UsageError, add_runtime_args, command, positive_int, set_threads


TRAIN_EPILOG = """\
Every TrainConfig key (glassgpt/seq2seq/train.py) is an override, --key=value or --key value: --task
(digits-to-words, words-to-digits, sorted) --max-number --d-model --steps --batch-size --lr --warmup
--decay-steps --weight-decay --beta1 --beta2 --grad-clip --seed --checkpoint-every --eval. Unset steps, lr and
warmup take the task's defaults. The run folder keeps the trainer state: --resume RUN continues it (give a larger
--steps; set --decay-steps at the start to stop early and continue on the same schedule).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "seq2seq", "encoder-decoder translation and fixed-query classification on generated tasks",
                ["glassgpt seq2seq train --task digits-to-words --out runs/num2words",
                 "glassgpt seq2seq translate --model runs/num2words 1947 --beam 4"])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = command(actions, "train", "train a translator (digits-to-words, words-to-digits) or a classifier (sorted)",
                ["glassgpt seq2seq train --task digits-to-words --out runs/num2words",
                 "glassgpt seq2seq train --task=sorted --out runs/sorted --steps=3000",
                 "glassgpt seq2seq train --steps=300 --decay-steps=600 --out runs/w; "
                 "glassgpt seq2seq train --resume runs/w --steps=600"], epilog=TRAIN_EPILOG)
    t.add_argument("--out", help="the run folder to write (TrainConfig out_dir; default runs/seq2seq-<task>)")
    t.add_argument("--config", help="a TOML file of TrainConfig keys (flat key = value lines)")
    t.add_argument("--resume", metavar="RUN", help="continue a run folder from its saved trainer state")
    t.add_argument("--overwrite", action="store_true", help="replace the seq2seq run already in --out")
    t.add_argument("--no-eval", action="store_true", help="skip scoring the held-out examples (TrainConfig eval=false)")
    t.add_argument("--show-config", action="store_true", help="print the resolved config as TOML and exit")
    add_runtime_args(t, device=False)
    t.set_defaults(func=train, overrides_allowed=True)

    tr = command(actions, "translate", "translate with a trained run: greedy, or beam search with --beam",
                 ["glassgpt seq2seq translate --model runs/num2words 1947 --beam 4 --plot align.png"])
    tr.add_argument("text", nargs="+", help="source text(s), e.g. 1947")
    tr.add_argument("--model", "--run", required=True, help="a run folder from `seq2seq train`")
    tr.add_argument("--beam", type=positive_int, default=1, help="beam width (1: greedy)")
    tr.add_argument("--show-attention", action="store_true", help="print which source character each output read")
    tr.add_argument("--plot", help="write the cross-attention alignment heatmap of the first text to this PNG")
    add_runtime_args(tr, device=False)
    tr.set_defaults(func=translate)

    c = command(actions, "classify", "classify with a trained fixed-query run and show where each query looks",
                ["glassgpt seq2seq classify --model runs/sorted 1337 1373 --plot queries.png"])
    c.add_argument("text", nargs="+", help="digit string(s), e.g. 1337")
    c.add_argument("--model", "--run", required=True, help="a run folder from `seq2seq train --task sorted`")
    c.add_argument("--plot", help="write the fixed queries' attention over the first text to this PNG")
    add_runtime_args(c, device=False)
    c.set_defaults(func=classify)


def train(args: argparse.Namespace) -> int:
    from ..configfile import to_toml
    from ..errors import GlassError
    from ..seq2seq import train as T
    from ..targets import claim_folder, is_seq2seq_run

    set_threads(args)
    try:
        overrides = T.parse_overrides(getattr(args, "overrides", []))
    except GlassError as e:
        raise UsageError(str(e)) from None
    if args.out is not None:
        if "out_dir" in overrides:
            raise UsageError("--out and --out-dir are the same setting; give one")
        overrides["out_dir"] = args.out
    if args.no_eval:
        overrides["eval"] = False
    base = None
    if args.resume:
        if args.overwrite:
            raise UsageError("--overwrite replaces a run and --resume continues it: choose one")
        if overrides.get("out_dir", args.resume) != args.resume:
            raise UsageError("--resume RUN continues RUN in place; leave out --out")
        base = saved_train_config(args.resume)  # a seq2seq run with a trainer state, or a one-line error
        for key in T.FIXED_ON_RESUME:
            if key in overrides and overrides[key] != base.get(key):
                raise UsageError(f"--{key.replace('_', '-')} cannot change on --resume: {args.resume} was trained "
                                 f"with {key} = {base.get(key)!r}")
        overrides["out_dir"] = args.resume
    try:
        cfg = T.make_config(args.config, overrides, base, f"{args.resume}/config.json")
        T.prepare(cfg)  # the task and the model config, checked before a folder is touched
    except GlassError as e:  # a value the command line, the config file or the run's saved config gave
        raise UsageError(str(e)) from None
    if args.show_config:
        print(to_toml(cfg.to_dict()), end="")
        return 0
    out = Path(cfg.out_dir or f"runs/seq2seq-{cfg.task}")
    if not args.resume:
        claim_folder(out, "a seq2seq run", is_seq2seq_run, args.overwrite, alternative="continue it with --resume")
    every = max(1, cfg.steps // 10)

    def on_step(step: int, loss: float) -> None:
        if step % every == 0 or step == cfg.steps - 1:
            print(f"step {step:5d}  loss {loss:.4f}", flush=True)

    _, log = T.train_run(cfg, out, resume=bool(args.resume), on_step=on_step, say=lambda s: print(s, flush=True))
    print(f"trained in {log['train_seconds']:.1f}s; wrote {out}")
    return 0


def saved_train_config(run: str) -> dict:
    """The TrainConfig values of a seq2seq run that can be resumed; anything else is refused in one line
    (missing, a file, another kind of folder, no or a damaged trainer state) before anything is written."""
    from ..errors import GlassError
    from ..io import read_json
    from ..seq2seq.checkpoint import read_trainer_state
    from ..targets import is_seq2seq_run

    path = Path(run)
    if not path.exists():
        raise GlassError(f"--resume {run}: no such folder")
    if not path.is_dir() or not is_seq2seq_run(path):
        raise GlassError(f"--resume {run}: not a seq2seq run (no config.json of a translator or classifier)")
    read_trainer_state(path)
    train = read_json(path / "config.json").get("train")
    if not isinstance(train, dict):
        raise GlassError(f"{path / 'config.json'}: no train settings to resume with")
    return train


def translate(args: argparse.Namespace) -> int:
    from ..seq2seq import plots
    from ..seq2seq.checkpoint import load_run
    from ..seq2seq.decode import beam_search, greedy

    set_threads(args)
    run = load_run(args.model, expect="seq2seq")
    model, task, tv = run.model, run.task, run.task.tgt_vocab
    src = task.encode_sources(args.text)  # checks every input before any output
    for i, text in enumerate(args.text):
        row = src[i: i + 1, : len(text)]  # (1, S): this source without padding
        if args.beam == 1:
            tokens, _ = greedy(model, row, tv.bos_id, tv.eos_id)
            ids = tokens[0].tolist()
            ids = ids[: ids.index(tv.eos_id) + 1] if tv.eos_id in ids else ids
            print(f"{text} → {tv.decode(ids)}")
        else:
            hyps = beam_search(model, row, tv.bos_id, tv.eos_id, beam=args.beam)
            ids = hyps[0].tokens
            print(f"{text} → {tv.decode(ids)}")
            for h in hyps:
                print(f"    {h.logprob:9.4f}  {tv.decode(h.tokens)}")
        if args.show_attention or (args.plot and i == 0):
            a = plots.alignment(model, task, text, ids)
            if args.show_attention:
                print(plots.alignment_text(a))
            if args.plot and i == 0:
                print(f"wrote {plots.plot_alignment(a, args.plot)}")
    return 0


def classify(args: argparse.Namespace) -> int:
    from ..seq2seq import plots
    from ..seq2seq.checkpoint import load_run

    set_threads(args)
    run = load_run(args.model, expect="pooling")
    run.task.encode_sources(args.text)  # checks every input before any output
    for i, text in enumerate(args.text):
        v = plots.query_view(run.model, run.task, text)
        best = int(v.probs.argmax())
        print(f"{text}: {run.task.labels[best]} (p={float(v.probs[best]):.3f})")
        print(plots.queries_text(v))
        if args.plot and i == 0:
            print(f"wrote {plots.plot_queries(v, run.task.labels, args.plot)}")
    return 0
