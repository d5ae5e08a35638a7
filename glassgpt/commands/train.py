"""`glassgpt train [--config FILE] [--key=value ...]`: pre-train a GPT from scratch, resume, or fine-tune."""

from __future__ import annotations

import argparse

EPILOG = """\
Every TrainConfig key is an override: --max-steps=500 --d-model=256 --device=cuda --dtype=bfloat16 --compile
--init-from=PATH (fine-tune a GGUF / Hugging Face / run folder) --track-qk=100 ...
With no arguments: a small character-level model on the shakespeare recipe (about five minutes on 2 cores).
Several processes: torchrun --nproc_per_node=N -m glassgpt train --out-dir=runs/x ...
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="pre-train a GPT (TOML config + --key=value overrides; resumable; torchrun-ready)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a TOML file of TrainConfig keys, or a bundled one: shakespeare-char, speedrun, "
                                    "baby, small, stdlib-bpe, gpt2")
    p.add_argument("--resume", metavar="RUN", help="continue a run folder from its newest checkpoint")
    p.add_argument("--resume-latest-good", action="store_true",
                   help="with --resume: skip damaged checkpoints and continue from the newest intact one")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as TOML and exit")
    p.set_defaults(func=run, overrides_allowed=True)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import TRAIN_CONFIG
    from ..errors import GlassError
    from ..io import read_json
    from ..configfile import to_toml
    from ..train import train
    from ..train_config import make_config, parse_overrides

    overrides = parse_overrides(getattr(args, "overrides", []))
    resume = args.resume
    if overrides.get("init_from") == "resume":
        if not (resume or overrides.get("out_dir")):
            raise GlassError("--init-from=resume needs --out-dir=RUN (or use --resume RUN)")
        resume = resume or overrides["out_dir"]
    if args.resume_latest_good and not resume:
        raise GlassError("--resume-latest-good needs --resume RUN")
    base = None
    if resume:
        from pathlib import Path

        if not (Path(resume) / TRAIN_CONFIG).is_file():
            raise GlassError(f"{resume}: not a run folder (no {TRAIN_CONFIG})")
        base = read_json(Path(resume) / TRAIN_CONFIG)
        overrides.pop("init_from", None)
    cfg = make_config(args.config, overrides, base)
    if args.show_config:  # the model fields the preset fills in are shown filled in
        print(to_toml(cfg.resolved()), end="")
        return 0
    result = train(cfg, resume=resume, latest_good=args.resume_latest_good)
    if result.dist.main and cfg.sample_tokens:
        print("\n--- a sample from the trained model ---")
        print(result.sample())
        print(f"--- run folder: {result.out} (glassgpt sample --run {result.out})")
    return 0

