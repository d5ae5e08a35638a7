"""Small helpers shared by the inspection modules: token batches, range checks, labels."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

from ..errors import GlassError
from ..model import GPT


def as_batch(tokens: "torch.Tensor | Sequence[int]") -> torch.Tensor:
    """One sequence as a (1, T) LongTensor, from a list, a (T,) or a (1, T) tensor."""
    t = torch.as_tensor(tokens, dtype=torch.long)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2 or t.shape[0] != 1:
        raise GlassError(f"expected one sequence of token ids, got a tensor of shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise GlassError("the input has no tokens")
    return t


def check_layer(model: GPT, layer: int) -> int:
    L = model.cfg.n_layers
    if not isinstance(layer, int) or not 0 <= layer < L:
        raise GlassError(f"layer {layer} is out of range: this model has layers 0..{L - 1}")
    return layer


def check_head(model: GPT, head: int) -> int:
    H = model.cfg.n_heads
    if not isinstance(head, int) or not 0 <= head < H:
        raise GlassError(f"head {head} is out of range: this model has heads 0..{H - 1}")
    return head


@contextmanager
def evaluating(model: GPT) -> Iterator[GPT]:
    """Eval mode and no gradients for a `with` block, then the model's mode as it was (safe mid-training)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def token_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable labels for token ids: each decoded on its own, with spaces and newlines made visible."""
    labels = []
    for i in ids:
        text = tokenizer.decode([int(i)]) if tokenizer is not None else str(int(i))
        labels.append(text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "·") or "∅")
    return labels


def W_U_of(model: GPT) -> torch.Tensor:
    """The unembedding matrix (d_model, d_vocab), W_Eᵀ for tied models."""
    return model.W_U
