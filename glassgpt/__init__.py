"""glassgpt: a GPT you can pre-train, run and see through.

`import glassgpt` is light: torch is imported the first time a name below is used
(`glassgpt.GPT`, `from glassgpt import preset`), so `glassgpt --help` answers at once.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {  # public name → the module that defines it
    "ModelConfig": "config", "preset": "config", "PretrainedGPT": "pretrained", "LearnedQueries": "seq2seq.pooling",
    **{name: "model" for name in ("GPT", "Attention", "Block", "Embedding", "KVCache", "MLP",
                                  "RoPE", "Unembedding", "softmax_with_temperature")},
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'glassgpt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
