"""`glassgpt train [--config FILE] [--key=value ...]`: pre-train a GPT from scratch, resume, or fine-tune."""

from __future__ import annotations

import argparse

from .common import UsageError, command

EPILOG = """\
Every TrainConfig key is an override: --max-steps=500 --d-model=256 --device=cuda --threads=1 --dtype=bfloat16
--compile --track-qk=100 ...; --out is --out-dir, --model is --init-from (fine-tune a GGUF, Hugging Face or run
folder). With no arguments: a small character-level model on the shakespeare recipe (about five minutes on 2 cores).
Several processes: torchrun --nproc_per_node=N -m glassgpt train --out runs/x ...
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "train", "pre-train a GPT (TOML config + --key=value overrides; resumable; torchrun-ready)",
                ["glassgpt train --max-steps=500 --out runs/shakespeare",
                 "glassgpt train --config speedrun --threads 2", "glassgpt train --resume runs/shakespeare"],
                epilog=EPILOG)
    p.add_argument("--out", help="the run folder to write (TrainConfig out_dir; default runs/<data>-<date>-<time>)")
    p.add_argument("--model", help="fine-tune this model instead of starting from scratch (TrainConfig init_from)")
    p.add_argument("--config", help="a TOML file of TrainConfig keys, or a bundled one: shakespeare-char, speedrun, "
                                    "baby, small, stdlib-bpe, gpt2")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder from its newest checkpoint")
    p.add_argument("--resume-latest-good", action="store_true",
                   help="with --resume: skip damaged checkpoints and continue from the newest intact one")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the training run already in --out-dir (its checkpoints are deleted)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as TOML and exit")
    p.set_defaults(func=run, overrides_allowed=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import TRAIN_CONFIG
    from ..errors import GlassError
    from ..io import read_json
    from ..configfile import to_toml
    from ..train import train
    from ..train_config import make_config

    overrides = _overrides(args)
    resume = args.resume
    if overrides.get("init_from") == "resume":
        if not (resume or overrides.get("out_dir")):
            raise UsageError("--init-from=resume needs --out RUN (or use --resume RUN)")
        resume = resume or overrides["out_dir"]
    if args.resume_latest_good and not resume:
        raise UsageError("--resume-latest-good needs --resume RUN")
    if args.overwrite and resume:
        raise UsageError("--overwrite replaces a run and --resume continues it: choose one")
    base = None
    if resume:
        if not (Path(resume) / TRAIN_CONFIG).is_file():
            raise GlassError(f"{resume}: not a run folder (no {TRAIN_CONFIG})")
        base = read_json(Path(resume) / TRAIN_CONFIG)
        overrides.pop("init_from", None)
    try:
        cfg = make_config(args.config, overrides, base, str(Path(resume or ".") / TRAIN_CONFIG))
    except GlassError as e:  # a value the command line, the config file or the run's saved config gave
        raise UsageError(str(e)) from None
    if args.show_config:  # the model fields the preset fills in are shown filled in
        print(to_toml(cfg.resolved()), end="")
        return 0
    result = train(cfg, resume=resume, latest_good=args.resume_latest_good, overwrite=args.overwrite)
    if result.dist.main and cfg.sample_tokens:
        print("\n--- a sample from the trained model ---")
        print(result.sample())
        print(f"--- run folder: {result.out} (glassgpt sample --model {result.out})")
    return 0


def _overrides(args: argparse.Namespace) -> dict:
    """--key=value pairs as TrainConfig values; an unknown key is a usage error with the nearest real key."""
    import difflib

    from ..errors import GlassError
    from ..configfile import field_types
    from ..train_config import TrainConfig, parse_overrides

    try:
        overrides = parse_overrides(getattr(args, "overrides", []))
    except GlassError as e:
        if "unknown config key" not in str(e):
            raise UsageError(str(e)) from None
        bad = str(e).split("'")[1]
        keys = list(field_types(TrainConfig))
        close = difflib.get_close_matches(bad, keys, n=1, cutoff=0.6)
        flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731
        raise UsageError(f"unknown config key {bad} ({flag(bad)})" + (f"; did you mean {flag(close[0])}?" if close else
                         f"; TrainConfig keys: {', '.join(keys)}")) from None
    for flag, key in (("out", "out_dir"), ("model", "init_from")):
        if getattr(args, flag) is not None:
            if key in overrides:
                raise UsageError(f"--{flag} and --{key.replace('_', '-')} are the same setting; give one")
            overrides[key] = getattr(args, flag)
    return overrides

