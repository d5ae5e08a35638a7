"""The `glassgpt` command line: one sub-command per module in glassgpt/commands/.

Each command module defines `register(subparsers)`, which adds its parser and sets
`func`. Heavy imports (torch) happen inside the commands, so `--help` stays fast.
Errors a user can cause are printed as one line, with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

COMMANDS = ["chat", "generate", "sample", "train", "data", "model", "models", "inspect", "tour", "serve", "export",
            "seq2seq", "doctor"]
EXAMPLES = """\
first steps:
  glassgpt chat                                      talk to SmolLM2-135M-Instruct (fetched on first use)
  glassgpt generate "The capital of France is" --max-new-tokens 20
  glassgpt train                                     a small model on Tiny Shakespeare, about five minutes
  glassgpt serve                                     the explorer on http://127.0.0.1:8000/
  glassgpt doctor                                    what this machine has: versions, threads, model, browser

`glassgpt COMMAND --help` shows a command's flags and an example.
"""


def build_parser() -> argparse.ArgumentParser:
    from .commands.common import Parser

    parser = Parser(prog="glassgpt", description="A GPT you can pre-train, run and see through.", epilog=EXAMPLES,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
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
    """Exit codes: 0 done, 1 it failed while running, 2 it was called wrongly (usage), 130 Ctrl-C."""
    from .commands.common import UsageError

    parser = build_parser()
    try:  # argparse exits for --help (0) and for usage errors (2); main returns the code instead
        args, extra = parser.parse_known_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return 2
        used = getattr(args, "parser", parser)  # the (sub)command's own parser: its usage, its flags
        if extra:  # only commands that take free `--key=value` overrides (train) accept unknown options
            if getattr(args, "late_positionals", False) and not any(a.startswith("-") for a in extra):
                args.late_positionals = extra  # argparse leaves a positional after an option unparsed (export)
            elif not getattr(args, "overrides_allowed", False):
                used.unknown(extra)
            else:
                args.overrides = extra
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    for name, value in vars(args).items():  # NaN slips through every range check; inf through most
        if isinstance(value, float) and not math.isfinite(value):
            print(f"{used.prog}: error: --{name.replace('_', '-')} must be a finite number, got {value}",
                  file=sys.stderr)
            return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as e:  # a flag's value or a combination of flags: one line, like a runtime error
        print(f"{used.prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
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
        return 1


def one_line(e: BaseException) -> str:
    from .errors import GlassError

    text = str(e).strip().replace("\n", " ") or type(e).__name__
    if isinstance(e, (GlassError, ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError)) \
            or type(e).__name__ == "UsageError":
        return text.strip("'\"") if isinstance(e, KeyError) else text
    return f"{type(e).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
