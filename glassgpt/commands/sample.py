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
    from ..generate import SampleConfig

    loaded = load_run(args.run)
    cfg = SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, seed=args.seed, stop_ids=loaded.stop_ids)
    sys.stdout.write(args.prompt)
    for piece in sliding_stream(loaded.model, loaded.tokenizer, args.prompt, cfg):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def sliding_stream(model, tokenizer, prompt: str, cfg):
    """Text pieces past the context window: when it is full, continue from the last half of the text so far."""
    from dataclasses import replace

    from ..generate import stream

    n_ctx, text, left, window = model.cfg.n_ctx, "", cfg.max_new_tokens, 0
    while left > 0:
        ids = tokenizer.encode(prompt + text)[-max(1, n_ctx // 2):] if text or window else tokenizer.encode(prompt)
        n = min(left, n_ctx - len(ids))
        seed = None if cfg.seed is None else cfg.seed + window
        produced = 0
        for piece in stream(model, tokenizer, ids, replace(cfg, max_new_tokens=n, seed=seed)):
            text += piece
            produced += 1
            yield piece
        if produced == 0 or any(s in text for s in cfg.stop_strings):
            return
        left -= n
        window += 1
