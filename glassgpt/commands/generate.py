"""`glassgpt generate "PROMPT"`: one continuation, for scripts. stdout carries the answer and nothing else."""

from __future__ import annotations

import argparse
import sys

from .common import (DEFAULT_WEIGHTS, WEIGHT_MODES, add_model_args, add_sampling_args, command,  # noqa: F401
                     load, sample_config)


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "generate", "continue a prompt once and print only the answer (for scripts)",
                ['glassgpt generate "The capital of France is" --max-new-tokens 20 --temperature 0',
                 'echo "Write a haiku about tea." | glassgpt generate --chat --seed 1'])
    p.add_argument("prompt", nargs="?", default="-", help="the prompt; '-' or nothing reads it from stdin")
    add_model_args(p, weights=True)
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the chat template")
    p.add_argument("--system", help="with --chat: the system prompt")
    add_sampling_args(p, max_new_tokens=200)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ContextLengthError
    from ..generate import stream

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    loaded = load(args)
    cfg = sample_config(args, stop_ids=loaded.stop_ids)
    if args.chat:
        from ..chat import Chat

        chat = Chat(loaded, system=args.system, sample=cfg)
        chat.messages.append({"role": "user", "content": prompt})
        text = chat.prompt_text()
    else:
        text = prompt
    ids = loaded.tokenizer.encode(text)
    n_ctx = loaded.model.cfg.n_ctx
    if len(ids) >= n_ctx:
        raise ContextLengthError(f"the prompt is {len(ids)} tokens; the context window of "
                                 f"{loaded.model.cfg.name or 'this model'} holds {n_ctx} (prompt + answer)")
    if not ids:
        raise ContextLengthError("the prompt is empty (0 tokens)")
    out = sys.stdout
    for piece in stream(loaded.model, loaded.tokenizer, ids, cfg):
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return 0
