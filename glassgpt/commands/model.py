"""`glassgpt model`: print a model's structure as the seed draws it (G2, T8)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="print a model's structure, stage by stage, with parameter counts")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a built-in configuration: gpt2, gpt2-medium, smollm2-135m, baby, small")
    src.add_argument("--model", help="a GGUF file, a Hugging Face folder, or a glassgpt run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import preset
    from ..describe import describe
    from ..model import GPT

    if args.model:
        from ..load import load_model

        model = load_model(args.model).model
    else:
        cfg = preset(args.preset or "gpt2")
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = GPT(cfg)
    print(describe(model))
    return 0
