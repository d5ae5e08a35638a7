"""Hook points: named places in the forward pass where an activation can be read or replaced.

Each `Hook` is an identity until someone attaches a function to it. Its public name is
its module path without the `hook_` prefix, e.g. `blocks.0.attn.pattern` (see
`GPT.hook_names()`). A hook function receives `(activation, name)` and returns either
None (keep the activation) or a tensor that replaces it (activation patching).
"""

from __future__ import annotations

import contextlib
import fnmatch
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class Hook(nn.Module):
    """An identity on the forward pass, unless a function is attached."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self.fns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self.name)
            if out is not None:
                x = out
        return x

    __call__ = forward  # skip nn.Module's call machinery: an unused hook costs one loop over an empty list


def name_hooks(root: nn.Module, strip_prefix: str = "") -> dict[str, Hook]:
    """Give every Hook under `root` its public name; return them by name."""
    hooks: dict[str, Hook] = {}
    for path, module in root.named_modules():
        if isinstance(module, Hook):
            name = ".".join(part.removeprefix("hook_") for part in path.split("."))
            if strip_prefix and name.startswith(strip_prefix):
                name = name[len(strip_prefix):]
            module.name = name
            hooks[name] = module
    return hooks


def select(hooks: dict[str, Hook], names: "str | Iterable[str] | Callable[[str], bool] | None") -> list[str]:
    """Resolve a name, a glob ('blocks.*.attn.pattern'), a list of them, 'all', or a predicate."""
    if names is None:
        return []
    if callable(names):
        return [n for n in hooks if names(n)]
    if isinstance(names, str):
        names = [names]
    chosen: list[str] = []
    for pattern in names:
        if pattern == "all":
            matches = list(hooks)
        elif any(ch in pattern for ch in "*?["):
            matches = [n for n in hooks if fnmatch.fnmatchcase(n, pattern)]
        elif pattern in hooks:
            matches = [pattern]
        else:
            matches = []
        if not matches:
            raise KeyError(f"no activation named {pattern!r}; see model.hook_names() for the valid names")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


HookFns = "dict[str, HookFn] | Iterable[tuple[str | Callable[[str], bool], HookFn]]"


@contextlib.contextmanager
def attached(hooks: dict[str, Hook], fns: HookFns) -> Iterator[None]:
    """Attach hook functions for the duration of a `with` block: {name: fn} or [(name, fn), ...] (names may be
    globs or predicates; a list may name one activation twice, and its functions then run in order)."""
    added: list[tuple[Hook, HookFn]] = []
    try:
        for pattern, fn in fns.items() if isinstance(fns, dict) else fns:
            for name in select(hooks, pattern):
                hooks[name].fns.append(fn)
                added.append((hooks[name], fn))
        yield
    finally:
        for hook, fn in added:
            hook.fns.remove(fn)


class ActivationCache(dict):
    """Activations by name, as `run_with_cache` returns them: `cache["blocks.0.attn.pattern"]`."""

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items())
        return f"ActivationCache({inner})"


class HookedModel:
    """What every glassgpt model offers for seeing inside (mixed into GPT, EncoderDecoder, ...).

    The model sets `self._hooks = name_hooks(self)` once its modules exist.
    """

    _hooks: dict[str, Hook]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hook_names(self) -> list[str]:
        """Every activation name run_with_cache accepts, in forward order."""
        return list(self._hooks)

    @contextlib.contextmanager
    def hooks(self, fns: dict[str, HookFn]):
        """Attach hook functions by name (or glob) for a `with` block; a function may return a replacement."""
        with attached(self._hooks, fns):
            yield self

    def run_with_hooks(self, *inputs, fwd_hooks: HookFns = (), **forward_kwargs) -> torch.Tensor:
        """Run the model with hook functions attached for this call only (TransformerLens's name for it).

        fwd_hooks: [(name, fn), ...] or {name: fn}; a name may be a glob ('blocks.*.attn.z') or a predicate.
        fn(activation, name) returns None to only read, or a tensor that replaces the activation (patching).
        """
        with attached(self._hooks, fwd_hooks):
            return self(*inputs, **forward_kwargs)

    def run_with_cache(self, *inputs, names: "str | Iterable[str] | Callable[[str], bool] | None" = "all",
                       hooks: dict[str, HookFn] | None = None, detach: bool = True,
                       **forward_kwargs) -> tuple[torch.Tensor, ActivationCache]:
        """Run the model on `inputs` and return (its output, the activations by name, in forward order).

        names: 'all', one name, a glob such as 'blocks.*.attn.pattern', a list, or a predicate.
        hooks: extra hook functions (e.g. to patch an activation) active during the run.
        """
        cache = ActivationCache()

        def save(x: torch.Tensor, name: str) -> None:
            cache[name] = x.detach() if detach else x

        with attached(self._hooks, hooks or {}), attached(self._hooks, {n: save for n in select(self._hooks, names)}):
            out = self(*inputs, **forward_kwargs)
        return out, ActivationCache((n, cache[n]) for n in self._hooks if n in cache)
