"""Sizes read from a file, checked before a single weight is allocated.

A GGUF, a Hugging Face config.json or a run's model_config.json says how big the model is; the
tensors in the file say how big it really is. Both are checked here, on shapes alone (tensor headers,
a model built on the meta device), so that a file claiming 100,000 blocks or a context of 2³¹ tokens
is a one-line error naming the file and the field, never an hour of work or an allocator's traceback.

    check_config(build, labels, source)          ModelConfig(...) with its errors in the file's own names
    check_blocks(n_layers, names, pattern, ...)  the block count against the blocks whose tensors are present
    check_shapes(cfg, shapes, labels, source)    every tensor's shape against the one the config implies
    check_memory(cfg, copies, what)              the weights (× copies) against the memory this machine has
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import torch

from .config import ConfigFieldError, ModelConfig
from .errors import CheckpointError, GlassError
from .model import GPT

# Which ModelConfig fields set the shape of each kind of weight (by the last part of its name).
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "W_E": ("d_vocab", "d_model"), "W_U": ("d_vocab", "d_model"), "W_pos": ("n_ctx", "d_model"),
    "W_Q": ("d_model", "n_heads"), "b_Q": ("d_model", "n_heads"),
    "W_K": ("d_model", "n_heads", "n_kv_heads"), "b_K": ("d_model", "n_heads", "n_kv_heads"),
    "W_V": ("d_model", "n_heads", "n_kv_heads"), "b_V": ("d_model", "n_heads", "n_kv_heads"),
    "W_QKV": ("d_model",), "b_QKV": ("d_model",), "W_O": ("d_model",), "b_O": ("d_model",),
    "W_up": ("d_model", "d_mlp"), "b_up": ("d_mlp",), "W_gate": ("d_model", "d_mlp"), "b_gate": ("d_mlp",),
    "W_down": ("d_model", "d_mlp"), "b_down": ("d_model",), "w": ("d_model",), "b": ("d_model",),
}


def check_config(build: Callable[[], ModelConfig], labels: dict[str, str], source: str | Path) -> ModelConfig:
    """build() → a ModelConfig; an impossible field becomes a CheckpointError in the file's own words."""
    try:
        return build()
    except ConfigFieldError as e:
        raise CheckpointError(f"{source}: {e.named(labels)}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: impossible model configuration ({e})") from None


def check_blocks(n_layers: int, names: list[str], pattern: str, label: str, source: str | Path) -> None:
    """pattern: a regex whose group 1 is the block index in a tensor name, e.g. r"^blk\\.(\\d+)\\."."""
    present = {int(m.group(1)) for n in names if (m := re.match(pattern, n))}
    if len(present) != n_layers or (present and max(present) != n_layers - 1):
        held = f"{len(present)} block(s)" + (f" (0..{max(present)})" if present else "")
        raise CheckpointError(f"{source}: {label} is {n_layers}, but the file holds tensors for {held}")


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's shape for cfg, from a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = GPT(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for i in range(cfg.n_layers):  # GPT-2 files fuse Q, K and V into one matrix
        d = cfg.d_model
        shapes[f"blocks.{i}.attn.W_QKV"] = (d, 3 * d)
        shapes[f"blocks.{i}.attn.b_QKV"] = (3 * d,)
    return shapes


def check_shapes(cfg: ModelConfig, shapes: dict[str, tuple[str, tuple[int, ...]]], labels: dict[str, str],
                 source: str | Path) -> None:
    """shapes: our weight name → (the file's tensor name, its shape in our orientation).

    Raises a CheckpointError naming the tensor, its shape, and the config fields (in the file's words)
    that imply another shape. Tensors the model does not have are left to the loader to report.
    """
    want = expected_shapes(cfg)
    for ours in [k for k in want if k in shapes]:  # in the model's order: the embedding first
        theirs, shape = shapes[ours]
        if tuple(shape) == want[ours]:
            continue
        fields = SHAPE_FIELDS.get(ours.rsplit(".", 1)[-1], ())
        given = ", ".join(f"{labels.get(f, f)} = {getattr(cfg, f)}" for f in fields)
        raise CheckpointError(f"{source}: tensor {theirs} has shape {tuple(shape)}, but {given or 'the config'} "
                              f"imply {want[ours]}")


def num_weights(cfg: ModelConfig) -> int:
    """The model's weight count, from the config alone (no model, not even on the meta device)."""
    d, d_kv, d_mlp = cfg.d_model, cfg.n_kv_heads * cfg.d_head, cfg.d_mlp
    norm = d * (2 if cfg.norm == "layernorm" else 1)
    attn = 2 * d * d + 2 * d * d_kv + (2 * d + 2 * d_kv if cfg.attn_bias else 0)
    n_up = 2 if cfg.mlp == "swiglu" else 1
    mlp = (n_up + 1) * d * d_mlp + ((n_up * d_mlp + d) if cfg.mlp_bias else 0)
    embed = cfg.d_vocab * d + (cfg.n_ctx * d if cfg.positions == "learned" else 0)
    unembed = norm + (0 if cfg.tie_embeddings else cfg.d_vocab * d)
    return embed + cfg.n_layers * (attn + mlp + 2 * norm) + unembed


def available_memory() -> int:
    """Bytes this process could still allocate: MemAvailable on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(cfg: ModelConfig, copies: int = 1, what: str = "the model", bytes_per_weight: int = 4) -> None:
    """Refuse a model whose weights (× copies: 4 for training with AdamW) would not fit in memory."""
    need = num_weights(cfg) * bytes_per_weight * copies
    have = available_memory()
    if need > have:
        raise GlassError(f"{what} needs about {need / 2**30:.1f} GiB ({num_weights(cfg):,} weights × "
                         f"{bytes_per_weight * copies} bytes), more than the {have / 2**30:.1f} GiB available")
