"""`glassgpt seq2seq`: cross-attention at work (T5) — a translator and a fixed-query classifier.

    glassgpt seq2seq train --task digits-to-words --out runs/num2words
    glassgpt seq2seq translate --model runs/num2words 1947 --beam 4 --plot align.png
    glassgpt seq2seq train --task sorted --out runs/sorted
    glassgpt seq2seq classify --model runs/sorted 1337 1373 --plot queries.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_runtime_args, command, positive_int, set_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "seq2seq", "encoder-decoder translation and fixed-query classification on generated tasks",
                ["glassgpt seq2seq train --task digits-to-words --out runs/num2words",
                 "glassgpt seq2seq translate --model runs/num2words 1947 --beam 4"])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = command(actions, "train", "train a translator (digits-to-words, words-to-digits) or a classifier (sorted)",
                ["glassgpt seq2seq train --task digits-to-words --out runs/num2words",
                 "glassgpt seq2seq train --task sorted --out runs/sorted --steps 3000"])
    t.add_argument("--task", default="digits-to-words", type=task_name, help="digits-to-words (default), words-to-digits, sorted")
    t.add_argument("--out", help="run folder to write (default runs/seq2seq-<task>)")
    t.add_argument("--steps", type=positive_int, help="optimizer steps (default 600 for translation, 3000 for sorted)")
    t.add_argument("--batch-size", type=positive_int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--d-model", type=positive_int, help="width of the residual stream")
    t.add_argument("--max-number", type=int, default=9999, help="translation: numbers 0..N (default 9999)")
    t.add_argument("--overwrite", action="store_true", help="replace the seq2seq run already in --out")
    t.add_argument("--no-eval", action="store_true", help="skip scoring the held-out examples after training")
    add_runtime_args(t, device=False)
    t.set_defaults(func=train)

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


def task_name(name: str) -> str:
    from ..seq2seq.task import TASKS

    if name not in TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return name


def train(args: argparse.Namespace) -> int:
    from ..seq2seq import train as T
    from ..seq2seq.checkpoint import save_run
    from ..seq2seq.task import Task, TaskConfig
    from ..targets import claim_folder, is_seq2seq_run

    set_threads(args)
    task = Task(TaskConfig(name=args.task, max_number=args.max_number))
    cfg = T.default_train_config(task.cfg)
    changes = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
                                 ("seed", args.seed)) if v is not None}
    cfg = T.TrainConfig(**{**cfg.to_dict(), **changes})
    sizes = {"d_model": args.d_model} if args.d_model else {}
    out = Path(args.out or f"runs/seq2seq-{task.name}")
    claim_folder(out, "a seq2seq run", is_seq2seq_run, args.overwrite)  # before training, not after
    every = max(1, cfg.steps // 10)

    def on_step(step: int, loss: float) -> None:
        if step % every == 0 or step == cfg.steps - 1:
            print(f"step {step:5d}  loss {loss:.4f}", flush=True)

    if task.kind == "translation":
        model_cfg = T.translator_config(task, **sizes)
        print(f"training an encoder-decoder ({model_cfg.n_enc_layers}+{model_cfg.n_dec_layers} layers, d_model "
              f"{model_cfg.d_model}) on {task.name}, numbers 0..{task.cfg.max_number}, "
              f"{len(task.test_numbers)} held out", flush=True)
        model, log = T.train_translator(task, model_cfg, cfg, on_step)
        if not args.no_eval:
            log["held_out_exact_match"], wrong = T.exact_match(model, task, task.test_numbers)
            log["held_out_wrong"] = [list(w) for w in wrong[:50]]
            print(f"held-out exact match: {log['held_out_exact_match']:.2%} of {len(task.test_numbers)}")
    else:
        model_cfg = T.classifier_config(task, **sizes)
        print(f"training a fixed-query classifier ({model_cfg.n_queries} queries, d_model {model_cfg.d_model}) "
              f"on {task.name}", flush=True)
        model, log = T.train_classifier(task, model_cfg, cfg, on_step)
        if not args.no_eval:
            log["held_out_accuracy"] = T.accuracy(model, task)
            print(f"accuracy on fresh examples: {log['held_out_accuracy']:.2%}")
    save_run(out, model, task, cfg.to_dict(), log)
    print(f"trained in {log['train_seconds']:.1f}s; wrote {out}")
    return 0


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
