"""Heads at a glance (G4): per layer and head, how far it looks, how spread out, and at what.

From one pattern (query i's weights over keys j ≤ i), averaged over query positions i ≥ 1
(position 0 can only look at itself):

- distance: Σ_j pattern[i, j]·(i − j) — how many tokens back, on average (G4: local vs global)
- entropy: −Σ_j pattern[i, j]·ln pattern[i, j], in nats — 0 for one key, ln(i+1) for uniform
- prev_token: pattern[i, i−1] — the weight on the token just before
- first_token: pattern[i, 0] — the weight on the first token (a "resting place" for many heads)
- distance without the first token (`distance_without_first`): the same mean distance after
  leaving key 0 out and renormalising each row over keys 1..i. Many trained heads park most
  of their weight on token 0 (the "attention sink"), which is far back for late queries, so
  the plain distance mixes "looks far" with "rests on token 0"; this measure separates them.
- induction: on a random sequence repeated twice, r r, the weight a query in the second copy
  puts on the token *after* its own earlier occurrence (position t+1 for the query at n+t):
  the head that continues a pattern it has seen before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..model import GPT
from .attention import attention_patterns

SCORES = ("distance", "entropy", "prev_token", "first_token", "induction")


def mean_distance(pattern: torch.Tensor) -> torch.Tensor:
    """pattern (..., T, T) → (...): mean over queries i ≥ 1 of Σ_j p[i, j]·(i − j)."""
    T = pattern.shape[-1]
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    dist = (i - j).clamp_min(0).to(pattern.dtype)  # (T, T)
    return (pattern * dist).sum(-1)[..., 1:].mean(-1)


def distance_without_first(pattern: torch.Tensor) -> torch.Tensor:
    """pattern (..., T, T) → (...): the mean distance over keys 1..i only (weights renormalised),
    averaged over queries i ≥ 2 (query 1 has one key left, itself)."""
    T = pattern.shape[-1]
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(1, T).unsqueeze(0)
    dist = (i - j).clamp_min(0).to(pattern.dtype)  # (T, T-1)
    rest = pattern[..., 1:]  # (..., T, T-1): key 0 left out
    rest = rest / rest.sum(-1, keepdim=True).clamp_min(1e-12)
    return (rest * dist).sum(-1)[..., 2:].mean(-1)


def uniform_pattern(T: int) -> torch.Tensor:
    """(T, T): causal attention spread evenly — the baseline of a head with no preference."""
    mask = torch.ones(T, T).tril()
    return mask / mask.sum(-1, keepdim=True)


def mean_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """pattern (..., T, T) → (...): mean over queries i ≥ 1 of the row's entropy in nats."""
    p = pattern.clamp_min(1e-30)
    return -(pattern * p.log()).sum(-1)[..., 1:].mean(-1)


def prev_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """pattern (..., T, T) → (...): mean weight on the previous token."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def first_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """pattern (..., T, T) → (...): mean weight of queries i ≥ 1 on position 0."""
    return pattern[..., 1:, 0].mean(-1)


def induction_score(pattern: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """pattern (..., T, T) of `start` prefix tokens then a length-n sequence twice → (...).

    The query at start + n + t (the second copy of token t) should look at start + t + 1.
    """
    t = torch.arange(n)
    return pattern[..., start + n + t, start + t + 1].mean(-1)


@dataclass
class DistanceByLayer:
    """G4 with its control, per layer (mean over heads): the mean distance, the distance with token 0 left
    out, token 0's share, and what uniform attention over the same text would give for the two distances."""

    distance: list[float]
    without_first: list[float]
    first_share: list[float]
    uniform: float
    uniform_without_first: float

    def early_late(self, values: list[float]) -> tuple[float, float]:
        """The mean of the first third of the layers and of the last third."""
        third = max(1, len(values) // 3)
        return sum(values[:third]) / third, sum(values[-third:]) / third

    def verdict(self) -> str:
        """What the numbers say about "deep layers attend more globally", control included."""
        (raw_e, raw_l), (rest_e, rest_l) = self.early_late(self.distance), self.early_late(self.without_first)
        if raw_l > raw_e and rest_l <= rest_e:
            return ("the deep layers' longer reach is the attention sink: leave token 0 out and deep layers look no "
                    "further back than shallow ones. The data do NOT support 'deep layers attend more globally' here.")
        if raw_l > raw_e:
            return "deep layers reach further back even with token 0 left out: G4's distance claim holds here."
        return "deep layers do not reach further back than shallow ones here: G4's distance claim is not shown."


def distance_by_layer(pattern: torch.Tensor) -> DistanceByLayer:
    """pattern (L, H, T, T) → G4's per-layer reading with its controls (token 0 left out; uniform attention)."""
    uniform = uniform_pattern(pattern.shape[-1])
    return DistanceByLayer(
        distance=mean_distance(pattern).mean(-1).tolist(),
        without_first=distance_without_first(pattern).mean(-1).tolist(),
        first_share=first_token_score(pattern).mean(-1).tolist(),
        uniform=float(mean_distance(uniform)),
        uniform_without_first=float(distance_without_first(uniform)),
    )


def repeated_random_tokens(d_vocab: int, n: int, seed: int = 0, bos: int | None = None) -> torch.Tensor:
    """(T,) ids: [bos] + r + r with r n random tokens — the probe for induction heads."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, d_vocab, (n,), generator=g)
    prefix = torch.tensor([] if bos is None else [bos], dtype=torch.long)
    return torch.cat([prefix, r, r])


@dataclass
class HeadScores:
    """Each score is a (n_layers, n_heads) tensor; see the module docstring."""

    distance: torch.Tensor
    entropy: torch.Tensor
    prev_token: torch.Tensor
    first_token: torch.Tensor
    induction: torch.Tensor
    n_tokens: int = 0  # length of the text the first four were measured on
    by_layer: DistanceByLayer | None = None  # G4's per-layer distances with their controls, on the same text
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, list[list[float]]]:
        return {name: getattr(self, name).tolist() for name in SCORES}

    def layer_means(self) -> dict[str, list[float]]:
        return {name: getattr(self, name).mean(-1).tolist() for name in SCORES}


def head_scores(
    model: GPT,
    tokens: "torch.Tensor | Sequence[int] | None" = None,
    n_random: int | None = None,
    seed: int = 0,
    bos: int | None = None,
) -> HeadScores:
    """Score every head. `tokens` (a natural text) gives distance, entropy, previous- and first-token
    scores; induction always uses a random sequence of n_random tokens repeated (default: as long as
    fits, at most 50). With no tokens, everything is measured on the repeated random sequence."""
    n_ctx = model.cfg.n_ctx
    start = 0 if bos is None else 1
    n = n_random or max(2, min(50, (n_ctx - start) // 2))
    n = min(n, (n_ctx - start) // 2)
    rep = repeated_random_tokens(model.cfg.d_vocab, n, seed, bos)
    rep_pattern = attention_patterns(model, rep).float()  # (L, H, T, T)
    pattern = rep_pattern if tokens is None else attention_patterns(model, tokens).float()
    return HeadScores(
        distance=mean_distance(pattern),
        entropy=mean_entropy(pattern),
        prev_token=prev_token_score(pattern),
        first_token=first_token_score(pattern),
        induction=induction_score(rep_pattern, n, start),
        n_tokens=pattern.shape[-1],
        by_layer=distance_by_layer(pattern),
    )
