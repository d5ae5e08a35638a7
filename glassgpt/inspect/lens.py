"""The logit lens (G4, G6): what would the model predict if it stopped after layer i?

Take the residual stream after each stage (the embedding, then each block's resid_post),
put it through the model's own final norm and unembedding, and read the top tokens. For
the last block this *is* the model's output, so the last row equals the real logits
(tested for LayerNorm and RMSNorm models). The norm is the model's own module, so RMSNorm
models (SmolLM2) get RMSNorm and GPT-2 style models get LayerNorm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..model import GPT
from .common import W_U_of, as_batch, evaluating


@dataclass
class Lens:
    layer_names: list[str]  # "embed", "blocks.0", …, "blocks.{L-1}"
    top_ids: torch.Tensor  # (L+1, T, k) long: best guesses at each stage and position
    top_probs: torch.Tensor  # (L+1, T, k): their probabilities


def residual_stages(model: GPT, tokens: "torch.Tensor | Sequence[int]") -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(layer names, residual stream after each stage (L+1, T, d_model), the real logits (T, d_vocab))."""
    L = model.cfg.n_layers
    names = ["embed"] + [f"blocks.{i}.resid_post" for i in range(L)]
    with evaluating(model):
        logits, cache = model.run_with_cache(as_batch(tokens), names=names)
    resid = torch.stack([cache[n][0] for n in names])  # (L+1, T, d_model)
    return ["embed"] + [f"blocks.{i}" for i in range(L)], resid, logits[0]


def lens_logits(model: GPT, tokens: "torch.Tensor | Sequence[int]") -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(layer names, lens logits (L+1, T, d_vocab), the model's real logits (T, d_vocab))."""
    names, resid, logits = residual_stages(model, tokens)
    with torch.no_grad():
        lens = model.unembed.norm(resid) @ W_U_of(model)  # (L+1, T, d_vocab)
    return names, lens, logits


def logit_lens(model: GPT, tokens: "torch.Tensor | Sequence[int]", k: int = 5) -> Lens:
    """The top-k tokens at every stage and position, with their probabilities."""
    names, lens, _ = lens_logits(model, tokens)
    k = max(1, min(k, lens.shape[-1]))
    top_probs, top_ids = torch.softmax(lens.float(), dim=-1).topk(k, dim=-1)  # (L+1, T, k)
    return Lens(names, top_ids, top_probs)
