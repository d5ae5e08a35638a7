"""`glassgpt sample --run RUN`: text from a trained run's newest checkpoint, streamed as it is sampled."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate text from a training run (its newest checkpoint)")
    p.add_argument("--run", required=True, metavar="RUN", help="a run folder written by `glassgpt train`")
    p.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0: greedy; higher: flatter (G12)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_run
    from ..generate import SampleConfig, sliding_stream

    loaded = load_run(args.run)
    cfg = SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, seed=args.seed, stop_ids=loaded.stop_ids)
    sys.stdout.write(args.prompt)
    for piece in sliding_stream(loaded.model, loaded.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0

