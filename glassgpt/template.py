"""Chat templates, rendered as transformers renders them, in Jinja's sandbox, within bounds.

A chat template is a Jinja program that comes with a model file: untrusted code. It runs in
Jinja's immutable sandbox with the options, filters and globals transformers gives it, so
templates written for transformers render the same string here:

    trim_blocks, lstrip_blocks          whitespace handling
    {% break %}, {% continue %}         jinja2.ext.loopcontrols
    {% generation %}…{% endgeneration %} (marks the assistant's text for training masks; rendered as is)
    tojson(x, indent=…)                 json.dumps without HTML escaping, non-ASCII kept
    strftime_now(format)                today's date, for templates that print it
    raise_exception(message)            the template refuses its input (an error naming the message)

The sandbox stops a template reaching Python's internals, not from looping for ever or building
a string of gigabytes. So rendering is bounded too: at most `MAX_SECONDS` of work and `MAX_CHARS`
characters, in the output or in any one string it builds on the way; past either, a
TemplateLimitError says which limit was hit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from datetime import datetime

from .errors import GlassError

MAX_SECONDS = 2.0
MAX_CHARS = 1_000_000


class TemplateError(GlassError):
    """The template is not valid Jinja, or failed (raise_exception), or broke the sandbox's rules."""


class TemplateLimitError(TemplateError):
    """The template took too long or made too much text."""


def render(template: str, messages: list[dict], add_generation_prompt: bool = True,
           max_seconds: float = MAX_SECONDS, max_chars: int = MAX_CHARS, **extra) -> str:
    """The template applied to a conversation (and any extra variables: bos_token, tools, …)."""
    import jinja2

    try:
        compiled = _compile(template)
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template is not valid Jinja: {_one_line(e)}") from None
    variables = dict(extra, messages=messages, add_generation_prompt=add_generation_prompt)
    pieces: list[str] = []
    size = 0
    try:
        with _bounded(max_seconds, max_chars):
            for piece in compiled.generate(**variables):
                size += len(piece)
                if size > max_chars:
                    raise TemplateLimitError(f"chat template output passed the limit of {max_chars:,} characters")
                pieces.append(piece)
    except TemplateError:
        raise
    except jinja2.TemplateError as e:
        raise TemplateError(f"chat template failed: {_one_line(e)}") from None
    except RecursionError:
        raise TemplateLimitError("chat template recursed too deeply") from None
    except MemoryError:
        raise TemplateLimitError("chat template ran out of memory") from None
    except Exception as e:  # a template can raise anything a filter or method raises (TypeError, KeyError, …)
        raise TemplateError(f"chat template failed: {type(e).__name__}: {_one_line(e)}") from None
    return "".join(pieces)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:300]


# ----------------------------------------------------------------------------- the environment


@functools.lru_cache(maxsize=32)
def _compile(template: str):
    return environment().from_string(template)


@functools.lru_cache(maxsize=1)
def environment():
    """Jinja's immutable sandbox with transformers' options, filters and globals, and bounded operators."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """{% generation %}…{% endgeneration %}: transformers tracks where the assistant's text lies; we render it."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class Bounded(ImmutableSandboxedEnvironment):
        # `'x' * 10**10` and `9 ** 9 ** 9` would take the machine before any output appears: check their size first.
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and _is_number(left) and _is_number(right) and abs(left) > 1 and \
                    abs(right) * max(abs(left), 2).bit_length() > 4 * MAX_CHARS:
                raise TemplateLimitError("chat template computes a power too large to bound")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and _is_number(n) and len(seq) * n > MAX_CHARS:
                        raise TemplateLimitError(f"chat template builds a sequence over the limit of {MAX_CHARS:,}")
            return super().call_binop(context, operator, left, right)

    class Namespace(jinja2.utils.Namespace):
        """namespace(...) as transformers allows it: no underscore-prefixed attributes."""

        def __setitem__(self, name, value):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"chat templates cannot set the attribute {name!r}")
            super().__setitem__(name, value)

    def raise_exception(message):
        raise TemplateError(f"chat template refused the conversation: {message}")

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = Bounded(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now, namespace=Namespace)
    return env


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ----------------------------------------------------------------------------- the bounds


@contextlib.contextmanager
def _bounded(max_seconds: float, max_chars: int):
    """Stop the template's own code (Jinja compiles it to Python, file '<template>') past the time limit, or
    when one of its variables (or a namespace attribute) holds a string longer than max_chars.

    A trace function sees every line the template runs, so a loop that prints nothing is caught too.
    """
    deadline = time.monotonic() + max_seconds
    lines = [0]

    def line(frame, event, arg):
        if event == "line":
            lines[0] += 1
            if time.monotonic() > deadline:
                raise TemplateLimitError(f"chat template ran past the limit of {max_seconds:g} s")
            if lines[0] % 4:  # strings can at most double 4 times between two looks (16× the limit)
                return line
            for value in frame.f_locals.values():
                if _too_long(value, max_chars):
                    raise TemplateLimitError(f"chat template builds a string over the limit of {max_chars:,} characters")
        return line

    def call(frame, event, arg):
        return line if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        yield
    finally:
        sys.settrace(previous)


def _too_long(value, max_chars: int) -> bool:
    if isinstance(value, (str, list)):
        return len(value) > max_chars
    attrs = getattr(value, "_Namespace__attrs", None)  # jinja2.utils.Namespace keeps its attributes here
    return isinstance(attrs, dict) and any(isinstance(v, (str, list)) and len(v) > max_chars for v in attrs.values())
