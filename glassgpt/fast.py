"""Speed tricks kept behind a wall: nothing here changes the maths, only how weights are stored.

`half_weights(model)`: store every weight matrix in float16 (or bfloat16), column-major, while
activations, norms and biases stay float32. Decoding one token reads every weight once, so on
a CPU its speed is set by memory bandwidth: half the bytes, and a layout the half-precision
matrix-vector kernel streams well, make it several times faster. The logits drift slightly
(benchmarks/generate.py reports by how much); inspection and training want float32.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def half_weights(model: nn.Module, dtype: torch.dtype = torch.float16) -> nn.Module:
    """Convert the model's weight matrices (W_*, 2-D) in place; returns the model."""
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if p.dim() != 2 or not leaf.startswith("W_"):
            continue
        if leaf in ("W_E", "W_pos"):  # rows are looked up; the unembedding multiplies by W_Eᵀ, already fast
            p.data = p.data.to(dtype)
        else:  # (d_in, d_out) stored column-major: x·W runs as the kernel's fast "x·Wᵀ" case
            p.data = p.data.to(dtype).T.contiguous().T
    return model


def weights_dtype(model: nn.Module) -> torch.dtype:
    return model.embed.W_E.dtype
