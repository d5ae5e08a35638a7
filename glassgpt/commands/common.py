"""One flag vocabulary for every command, and the parser that says "did you mean".

    --model           any model source: a run folder, a GGUF file, a Hugging Face folder, or smollm2 (the default)
    --out             where results go
    --max-new-tokens, --temperature, --top-k, --top-p, --min-p, --repetition-penalty, --seed, --stop
                      wherever text is generated
    --device, --threads
                      wherever a model runs

Old spellings stay as aliases (--run for --model, --out-dir for --out). Flag values are checked while
parsing, so a bad value is a usage error (exit 2, with the command's usage); failures while running exit 1.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys

DEVICES = ("auto", "cpu", "cuda", "mps")
# glassgpt.fast.MODES and DEFAULT_MODE, spelled out so that --help never imports torch (tests/test_fast.py checks)
WEIGHT_MODES = ("fp32", "fp16", "bf16", "int8", "int4", "q4a8")
DEFAULT_WEIGHTS = "int4"


class Parser(argparse.ArgumentParser):
    """argparse, plus: an unknown flag or command names the nearest real one, with the command's usage;
    a bad value is one line."""

    def error(self, message: str):
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            close = difflib.get_close_matches(wrong.group(1), re.findall(r"'([^']*)'", wrong.group(2)), n=1)
            message += f"; did you mean {close[0]}?" if close else ""
        if wrong or message.startswith(("unrecognized arguments", "the following arguments are required")):
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unknown(self, extra: list[str]):
        """Report flags this parser does not take, with the closest ones it does."""
        known = [s for a in self._actions for s in a.option_strings]
        hints = []
        for arg in extra:
            flag = arg.split("=", 1)[0]
            if flag.startswith("-"):
                close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
                if close:
                    hints.append(f"did you mean {close[0]}?")
        self.error(f"unrecognized arguments: {' '.join(extra)}" + (f" ({' '.join(hints)})" if hints else ""))


class UsageError(Exception):
    """A problem with how a command was called, found after parsing (e.g. two flags that exclude each other)."""


def command(sub: argparse._SubParsersAction, name: str, summary: str, examples: list[str] | str,
            **kw) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in the list and atop its help) and examples (at its foot)."""
    examples = [examples] if isinstance(examples, str) else examples
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
    if kw.get("epilog"):
        epilog = kw.pop("epilog").rstrip() + "\n\n" + epilog
    p = sub.add_parser(name, help=summary, description=summary, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
    p.set_defaults(parser=p)
    return p


# ----------------------------------------------------------------------------- values checked while parsing


def _number(kind, test, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
non_negative = _number(float, lambda v: v >= 0, "a number >= 0")
positive = _number(float, lambda v: v > 0, "a number > 0")
probability = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
port = _number(int, lambda v: 0 < v < 65536, "a port in 1..65535")


# ----------------------------------------------------------------------------- the shared flags


MODEL_HELP = "a run folder, a GGUF file, a Hugging Face folder, or smollm2 (default: SmolLM2-135M-Instruct, " \
             "fetched into the cache on first use)"


def add_model_args(p: argparse.ArgumentParser, aliases: tuple[str, ...] = (), required: bool = False,
                   help: str = MODEL_HELP, weights: bool = False, device: bool = True) -> None:
    p.add_argument("--model", *aliases, required=required, metavar="MODEL", help=help)
    if weights:
        p.add_argument("--weights", choices=WEIGHT_MODES, default=DEFAULT_WEIGHTS,
                       help=f"how the layers' weight matrices are stored for decoding (default {DEFAULT_WEIGHTS}; "
                            "fp32 is exact; logits are float32 in every mode; see README, Chat and generation)")
    add_runtime_args(p, device)


def add_runtime_args(p: argparse.ArgumentParser, device: bool = True) -> None:
    g = p.add_argument_group("where it runs")
    if device:
        g.add_argument("--device", choices=DEVICES, default="auto",
                       help="cpu, cuda or mps (default auto: cuda if present, else cpu)")
    g.add_argument("--threads", type=positive_int, metavar="N", help="torch CPU threads (default: torch's choice)")


def add_sampling_args(p: argparse.ArgumentParser, max_new_tokens: int, temperature: float = 0.2,
                      top_p: float | None = 0.9) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=non_negative_int, metavar="N", default=max_new_tokens,
                   help=f"at most this many new tokens (default {max_new_tokens})")
    g.add_argument("--temperature", type=non_negative, metavar="T", default=temperature, help=f"0 = greedy (default {temperature:g})")
    g.add_argument("--top-k", type=positive_int, metavar="K", default=None, help="keep the k most likely tokens")
    g.add_argument("--top-p", type=probability, metavar="P", default=top_p,
                   help="nucleus: keep the top tokens up to this mass" + (f" (default {top_p:g}; 1 = off)" if top_p else ""))
    g.add_argument("--min-p", type=fraction, metavar="P", default=None, help="keep tokens ≥ min-p × the top probability")
    g.add_argument("--repetition-penalty", type=positive, metavar="R", default=1.0, help="> 1 discourages repeats (default 1)")
    g.add_argument("--seed", type=int, metavar="N", default=None, help="make sampling repeatable")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop at this string (repeatable)")


def sample_config(args: argparse.Namespace, stop_ids=()):
    from ..generate import SampleConfig

    return SampleConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty,
                        seed=args.seed, stop_strings=tuple(args.stop), stop_ids=tuple(stop_ids))


def device(name: str = "auto") -> str:
    """The torch device a model would run on."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: no Apple GPU is available")
    return name


def set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def load(args: argparse.Namespace, weights: str | None = None):
    """The model named by --model on --device, with --threads set, saying what it does while it loads."""
    from ..load import load_model
    from ..progress import status

    set_threads(args)
    where = device(getattr(args, "device", "cpu"))  # no --device flag: the CPU
    with status(f"loading {args.model or 'smollm2'}"):
        loaded = load_model(args.model, weights=weights or getattr(args, "weights", "fp32"))
        if where != "cpu":
            loaded.model.to(where)
    return loaded
