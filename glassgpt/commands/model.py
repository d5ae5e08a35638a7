"""`glassgpt model`: print a model's structure as the seed draws it (G2, T8)."""

from __future__ import annotations

import argparse

from .common import MODEL_HELP, UsageError, add_model_args, command, load


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "model", "print a model's structure, stage by stage, with parameter counts",
                ["glassgpt model --preset gpt2", "glassgpt model --model smollm2"])
    p.add_argument("--preset", type=preset_name, help="a built-in configuration: gpt2, gpt2-medium, smollm2-135m, "
                                                      "baby, small (default gpt2; shapes only, nothing is loaded)")
    add_model_args(p, help="a model to load and describe instead: " + MODEL_HELP)
    p.set_defaults(func=run)


def preset_name(name: str) -> str:
    from ..config import PRESETS  # no torch

    if name not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return name


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import preset
    from ..describe import describe
    from ..model import GPT

    if args.model and args.preset:
        raise UsageError("--preset and --model exclude each other")
    if args.model:
        model = load(args).model
    else:
        cfg = preset(args.preset or "gpt2")
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = GPT(cfg)
    print(describe(model))
    return 0
