"""Attention patterns (T2, T8): who each token looks at, in every head.

`pattern` is the softmax of the scaled scores after the causal mask, each row summing to 1;
`scores` are Q·Kᵀ/√d_k before the mask and the softmax — the full n×n matrix of T8, the
future included. Asking for either makes the model take its explicit attention path.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..model import GPT
from .common import as_batch, check_head, check_layer, evaluating


def _read(model: GPT, tokens, what: str, layer: int | None) -> torch.Tensor:
    layers = range(model.cfg.n_layers) if layer is None else [check_layer(model, layer)]
    names = [f"blocks.{i}.attn.{what}" for i in layers]
    with evaluating(model):
        _, cache = model.run_with_cache(as_batch(tokens), names=names)
    return torch.stack([cache[n][0] for n in names])  # (L or 1, H, T, T)


def attention_patterns(model: GPT, tokens: "torch.Tensor | Sequence[int]", layer: int | None = None) -> torch.Tensor:
    """The attention weights: (n_layers, H, T, T), or (1, H, T, T) for one layer. Row i: query i over keys."""
    return _read(model, tokens, "pattern", layer)


def attention_scores(model: GPT, tokens: "torch.Tensor | Sequence[int]", layer: int | None = None) -> torch.Tensor:
    """The raw scores Q·Kᵀ/√d_k before the causal mask and softmax (T8): (L or 1, H, T, T)."""
    return _read(model, tokens, "scores", layer)


def top_attended(
    model: GPT, tokens: "torch.Tensor | Sequence[int]", layer: int, head: int | None = None, k: int = 3
) -> dict[int, list[list[tuple[int, float]]]]:
    """For each head (or just `head`): for each query position, its k most attended key positions.

    Returns {head: [[(key position, weight), …] for each query position]}, heaviest first.
    A query at position i can see only i + 1 keys, so its list is at most i + 1 long.
    """
    heads = range(model.cfg.n_heads) if head is None else [check_head(model, head)]
    pattern = attention_patterns(model, tokens, layer)[0]  # (H, T, T)
    T = pattern.shape[-1]
    out: dict[int, list[list[tuple[int, float]]]] = {}
    for h in heads:
        rows = []
        for i in range(T):
            n = min(k, i + 1) if model.blocks[layer].attn.causal else min(k, T)
            w, j = pattern[h, i].topk(n)
            rows.append([(int(a), float(b)) for a, b in zip(j, w)])
        out[h] = rows
    return out
