"""The backward pass of one attention head, derived by hand (T16), to check against autograd.

Forward (per head, causal):        Backward, given dO = ∂L/∂O:
    S = Q·Kᵀ/√d_k    (T, T)            dV = Pᵀ·dO
    P = softmax(mask(S))               dP = dO·Vᵀ
    O = P·V          (T, d_head)       dS = P ⊙ (dP − rowsum(dP ⊙ P))   (the softmax Jacobian, row by row)
                                       dQ = dS·K/√d_k
                                       dK = dSᵀ·Q/√d_k

dQ is a mix of the keys and dK a mix of the queries: the gradient that moves Q is made of
K and the other way round, so each is shaped by what the other offers — the seed's
"∂loss/∂Q = K · (gradient of the weights)".
"""

from __future__ import annotations

import math

import torch


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True):
    """q, k, v: (..., T, d_head) → (O, P), O: (..., T, d_head), P: (..., T, T)."""
    T, d_k = q.shape[-2], q.shape[-1]
    S = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T, T)
    if causal:
        S = S.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    P = torch.softmax(S, dim=-1)
    return P @ v, P


def attention_backward(dO: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, P: torch.Tensor):
    """The hand-derived gradients (dQ, dK, dV), each shaped like its input."""
    d_k = q.shape[-1]
    dV = P.transpose(-2, -1) @ dO  # (..., T, d_head)
    dP = dO @ v.transpose(-2, -1)  # (..., T, T)
    # Softmax Jacobian for one row p: ∂p_j/∂s_m = p_j(δ_jm − p_m), so dS_m = p_m(dP_m − Σ_j dP_j p_j).
    dS = P * (dP - (dP * P).sum(dim=-1, keepdim=True))  # (..., T, T); masked entries have P = 0, so dS = 0
    dQ = dS @ k / math.sqrt(d_k)  # (..., T, d_head)
    dK = dS.transpose(-2, -1) @ q / math.sqrt(d_k)  # (..., T, d_head)
    return dQ, dK, dV
