"""`glassgpt chat`: talk to a model. Answers stream as they are generated.

Commands inside the session: /temp 0.7, /system TEXT, /reset, /help, /quit.
Ctrl-C stops the answer being written and keeps the session. Works line by line
when stdin is not a terminal (scripts, tests); notices then go to stderr only.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_model_args, add_sampling_args, command, load, sample_config

HELP = "/temp T (0 = greedy)   /system TEXT (empty: none)   /reset (forget the turns)   /quit"


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "chat", "talk to a model (default: SmolLM2-135M-Instruct, fetched once, then offline)",
                ["glassgpt chat", "glassgpt chat --model runs/shakespeare --temperature 0.8",
                 "glassgpt chat --system 'Answer in one sentence.' --max-new-tokens 64"])
    add_model_args(p, weights=True)
    p.add_argument("--system", help="system prompt: the context every answer starts from")
    # Greedy by default: SmolLM2-135M (4-bit) gives "L'…" 14% against "The" 15% for "What is the capital of
    # France?", so even T = 0.2 starts 40% of answers in French. /temp 0.7 brings variety back.
    add_sampling_args(p, max_new_tokens=512, temperature=0.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..chat import Chat

    tty = sys.stdin.isatty()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731 — everything but answers
    loaded = load(args)
    chat = Chat(loaded, system=args.system, sample=sample_config(args), on_notice=say)
    if tty:
        say(f"{loaded.model.cfg.name or loaded.source} — {loaded.model.num_params() / 1e6:.0f}M parameters, "
            f"context {loaded.model.cfg.n_ctx} tokens. {HELP}")
    while True:
        line = _read(tty)
        if line is None:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not _command(chat, line, say):
                return 0
            continue
        _answer(chat, line, say)


def _read(tty: bool) -> str | None:
    while True:
        try:
            if tty:
                return input("\n> ")
            line = sys.stdin.readline()
            return line if line else None
        except EOFError:
            return None
        except KeyboardInterrupt:
            if not tty:
                return None
            print("\n(Ctrl-D or /quit leaves)", file=sys.stderr)


def _answer(chat, text: str, say) -> None:
    from ..errors import GlassError

    reply = chat.ask(text)
    try:
        for piece in reply:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        say("[stopped]")
    except GlassError as e:  # e.g. one message longer than the whole context window
        say(f"error: {e}")
    finally:
        reply.close()  # records what was said, even when stopped
        sys.stdout.flush()


def _command(chat, line: str, say) -> bool:
    """Handle a /command. False means leave."""
    from ..errors import GlassError

    name, _, rest = line.partition(" ")
    rest = rest.strip()
    if name in ("/quit", "/exit", "/q"):
        return False
    if name == "/reset":
        chat.reset()
        say("[conversation cleared]")
    elif name == "/system":
        chat.set_system(rest)
        chat.reset()
        say(f"[system prompt {'set' if rest else 'removed'}; conversation cleared]")
    elif name == "/temp":
        try:
            chat.set_temperature(float(rest))
            say(f"[temperature {chat.sample.temperature}]")
        except (ValueError, GlassError):
            say(f"error: /temp needs a number >= 0, got {rest!r}")
    elif name == "/help":
        say(HELP)
    else:
        say(f"unknown command {name}; {HELP}")
    return True
