"""Small models shared by several test files (imported as a plain module, like bad_input.py)."""

from __future__ import annotations

import torch

from glassgpt.config import ModelConfig
from glassgpt.decode import StaticKVCache
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


@torch.inference_mode()
def lean_and_glass(model: GPT, step, prompt: list[int], n_steps: int, kv_dtype=torch.float32):
    """Logits of n_steps one-token steps after `prompt` through `step` (a DecodeStep, C or torch, on a static
    cache of kv_dtype) and through the glass box (GPT.forward, growing cache), each step feeding the glass
    box's greedy token to both: (ours (n_steps, d_vocab), theirs (n_steps, d_vocab), the static cache)."""
    glass, static = model.new_cache(), StaticKVCache(model.cfg, len(prompt) + n_steps, dtype=kv_dtype)
    if prompt:
        model(torch.tensor([prompt]), cache=glass)
        model(torch.tensor([prompt]), cache=static)
    ours, theirs, token = [], [], torch.tensor([[7]])
    for _ in range(n_steps):
        theirs.append(model(token, cache=glass)[:, -1])
        ours.append(step(token, static))
        token = theirs[-1].argmax(-1, keepdim=True)
    return torch.cat(ours), torch.cat(theirs), static
