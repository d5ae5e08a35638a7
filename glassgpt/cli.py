"""The `glassgpt` command line: one sub-command per module in glassgpt/commands/.

Each command module defines `register(subparsers)`, which adds its parser and sets
`func`. Heavy imports (torch) happen inside the commands, so `--help` stays fast.
Errors a user can cause are printed as one line, with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ["model", "data", "train", "sample", "generate", "chat", "export", "inspect", "tour", "serve", "seq2seq"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassgpt", description="A GPT you can pre-train, run and see through.")
    parser.add_argument("--version", action="version", version=f"glassgpt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"glassgpt.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"glassgpt.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only commands that take free `--key=value` overrides (train) accept unknown options
        if not getattr(args, "overrides_allowed", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit:
        raise
    except Exception as e:  # one line, never a traceback, unless asked for
        if os.environ.get("GLASSGPT_DEBUG"):
            raise
        print(f"glassgpt: error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(e: BaseException) -> str:
    from .errors import GlassError

    text = str(e).strip().replace("\n", " ") or type(e).__name__
    if isinstance(e, (GlassError, ValueError, FileNotFoundError, PermissionError, KeyError)):
        return text.strip("'\"") if isinstance(e, KeyError) else text
    return f"{type(e).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
