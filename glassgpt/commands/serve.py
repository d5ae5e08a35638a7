"""`glassgpt serve`: the explorer, a local web page to watch a model think (T12, G12, T8, G6, G9)."""

from __future__ import annotations

import argparse

from .common import UsageError, add_runtime_args, command, port, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "serve", "serve the explorer page: tokens, next-token distribution, attention, logit lens, "
                              "embeddings, generation",
                ["glassgpt serve", "glassgpt serve --runs runs/ --port 8080"])
    p.add_argument("--model", help="a GGUF file, Hugging Face folder or run folder, listed first "
                                   "(default: SmolLM2-135M-Instruct, fetched on first use)")
    p.add_argument("--runs", help="a folder whose runs the model picker lists")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port, default=8000, help="default 8000")
    p.add_argument("--max-generations", type=positive_int, default=2, help="generations streaming at once (default 2)")
    add_runtime_args(p, device=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import GlassError
    from ..progress import say, status

    if args.runs is not None and not Path(args.runs).expanduser().is_dir():
        raise UsageError(f"--runs: {args.runs} is not a folder")
    if args.model not in (None, "smollm2", "default") and not Path(args.model).expanduser().exists():
        raise GlassError(f"--model: {args.model} does not exist")
    listening = check_port_free(args.host, args.port)  # before the slow part: loading the model
    listening.close()
    if args.model is None:
        from ..fetch import gguf_path

        try:
            gguf_path()  # the default model, fetched once; --runs alone still serves without it
        except GlassError as e:
            if args.runs is None:
                raise
            say(f"(the default model is not offered: {e})")

    with status("starting the explorer"):
        from .common import set_threads

        set_threads(args)
        import uvicorn

        from ..web import Limits, create_app

        app = create_app(args.model, args.runs, Limits(max_generations=args.max_generations), host=args.host)
    entries = app.state.registry.entries()
    if not entries:
        raise GlassError("no model to serve: give --model PATH or --runs DIR")
    with status(f"loading {entries[0].label}"):
        app.state.registry.get(entries[0].id)  # the first page load should not wait for it
    print(f"glassgpt explorer on http://{args.host}:{args.port}/  (API: /openapi.json; Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def check_port_free(host: str, number: int):
    """Bind the port once, so a taken port fails in a second rather than after the model has loaded."""
    import socket

    try:
        family = socket.getaddrinfo(host, number, type=socket.SOCK_STREAM)[0][0]
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # what uvicorn does too
        s.bind((host, number))
    except OSError as e:
        from ..errors import GlassError

        raise GlassError(f"cannot listen on {host}:{number}: {e.strerror or e} (another server? try --port)") from None
    return s
