"""`glassgpt sample --model RUN`: text from a trained run's newest checkpoint, streamed as it is sampled."""

from __future__ import annotations

import argparse
import sys

from .common import add_model_args, add_sampling_args, command, load, sample_config


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "sample", "text from a trained run (or any model), streamed on past its context window",
                ["glassgpt sample --model runs/shakespeare --max-new-tokens 300",
                 "glassgpt sample --model runs/shakespeare --prompt ROMEO: --seed 1"])
    add_model_args(p, aliases=("--run",), required=True,
                   help="a run folder written by `glassgpt train` (or any model: GGUF, Hugging Face folder, smollm2)")
    p.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    add_sampling_args(p, max_new_tokens=500, temperature=0.8, top_p=None)  # 0: greedy; higher: flatter (G12)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..generate import sliding_stream

    loaded = load(args)
    cfg = sample_config(args, stop_ids=loaded.stop_ids)
    sys.stdout.write(args.prompt)
    for piece in sliding_stream(loaded.model, loaded.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0

