"""Small models shared by several test files (imported as a plain module, like bad_input.py)."""

from __future__ import annotations

import torch

from glassgpt.config import ModelConfig
from glassgpt.model import GPT


def sharp_llama_toy() -> GPT:
    """A 3-layer Llama-style GPT (RoPE, RMSNorm, SwiGLU, grouped-query, attention biases), random weights scaled
    up so attention is far from uniform and biases far from zero: effects of one head or one token show."""
    torch.manual_seed(0)
    cfg = ModelConfig(d_vocab=64, n_ctx=16, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_mlp=64,
                      positions="rope", norm="rmsnorm", mlp="swiglu", attn_bias=True, mlp_bias=False)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8) if p.dim() > 1 else p.add_(0.1 * torch.randn_like(p))
    return model
