"""Per-head views of the attention weights (T10, T16), shaped as TransformerLens shapes them.

The model stores each layer's heads side by side: W_Q (d_model, n_heads·d_head), W_O
(n_heads·d_head, d_model). Here they are split by head:

    head_weights(model, layer)   W_Q, W_K, W_V: (n_heads, d_model, d_head)   W_O: (n_heads, d_head, d_model)
                                 b_Q, b_K, b_V: (n_heads, d_head)            (when the model has biases)
    W_OV(model, layer)           W_V[h]·W_O[h]: (n_heads, d_model, d_model)  each head's one value map (T10)
    W_QK(model, layer)           W_Q[h]·W_K[h]ᵀ: (n_heads, d_model, d_model) the bilinear form behind the scores
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import Attention


def _attention(model: nn.Module, layer: int) -> Attention:
    return model.blocks[layer].attn


def head_weights(model: nn.Module, layer: int) -> dict[str, torch.Tensor]:
    """Layer `layer`'s attention weights split by head (see the module docstring for the shapes).

    W_Q and W_O are views of the parameters (editing them edits the model). With grouped-query
    attention (n_kv_heads < n_heads) each query head gets a copy of the key/value head it shares.
    """
    attn = _attention(model, layer)
    H, H_kv, d = attn.n_heads, attn.n_kv_heads, attn.d_head
    D = attn.W_Q.shape[0]
    group = H // H_kv  # query heads served by one key/value head

    def by_head(W: torch.Tensor, heads: int) -> torch.Tensor:  # (D, heads·d) → (H, D, d)
        W = W.view(D, heads, d).permute(1, 0, 2)
        return W if heads == H else W.repeat_interleave(group, dim=0)

    out = {"W_Q": by_head(attn.W_Q, H), "W_K": by_head(attn.W_K, H_kv), "W_V": by_head(attn.W_V, H_kv),
           "W_O": attn.W_O.view(H, d, D)}  # (H·d, D) → (H, d, D)
    if attn.b_Q is not None:
        out["b_Q"] = attn.b_Q.view(H, d)
        out["b_K"] = attn.b_K.view(H_kv, d).repeat_interleave(group, dim=0)
        out["b_V"] = attn.b_V.view(H_kv, d).repeat_interleave(group, dim=0)
    return out


def W_OV(model: nn.Module, layer: int) -> torch.Tensor:
    """Each head's single combined value map (T10): W_V (down) · W_O (up), (n_heads, d_model, d_model).
    Its rank is at most d_head: the bottleneck of each head."""
    w = head_weights(model, layer)
    return w["W_V"] @ w["W_O"]  # (H, D, d) @ (H, d, D)


def W_QK(model: nn.Module, layer: int) -> torch.Tensor:
    """The bilinear form behind each head's scores (ignoring RoPE and biases): W_Q · W_Kᵀ, (n_heads, d_model, d_model)."""
    w = head_weights(model, layer)
    return w["W_Q"] @ w["W_K"].transpose(-2, -1)  # (H, D, d) @ (H, d, D)
