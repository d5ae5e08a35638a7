"""Attention with fixed learned queries (T5): a classifier that pools a sequence by asking it set questions.

    digits → Encoder (bidirectional Blocks) → hidden (B, T, d_model)
           → LearnedQueries: n_queries learned vectors attend over hidden → (B, n_queries, d_model)
           → norm → concatenate → W_cls → class logits

Unlike self- or cross-attention, the queries are parameters: they are the same for every
input. The pattern `pool.attn.pattern` (B, H, n_queries, T) shows where each one looks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, from_dict
from ..errors import GlassError
from ..hooks import HookedModel, name_hooks
from ..model import Attention, init_weights, make_norm
from .model import Encoder


@dataclass
class PoolConfig:
    src_vocab: int = 13
    src_ctx: int = 12
    n_classes: int = 2
    n_queries: int = 4
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_mlp: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        for name in ("src_vocab", "src_ctx", "n_classes", "n_queries", "d_model", "n_heads", "n_layers", "d_mlp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise GlassError(f"PoolConfig.{name} must be a positive integer, got {value!r}")
        self.model_config()

    def model_config(self) -> ModelConfig:
        """The ModelConfig that the shared parts (Embedding, Block, LearnedQueries) are built from."""
        return ModelConfig(d_vocab=self.src_vocab, n_ctx=self.src_ctx, d_model=self.d_model, n_layers=self.n_layers,
                           n_heads=self.n_heads, d_mlp=self.d_mlp, dropout=self.dropout, name="pooling")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PoolConfig":
        return from_dict(cls, data, GlassError)


class LearnedQueries(nn.Module):
    """Fixed learned queries (T5): n_queries learned vectors attend over a sequence (pooling, memory).

    The queries are parameters, not computed from the input: every sequence is asked the
    same questions. Returns (B, n_queries, d_model); the pattern is (B, H, n_queries, T).
    """

    def __init__(self, cfg: ModelConfig, n_queries: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, cfg.d_model) * 0.02)  # (n_queries, d_model)
        self.attn = Attention(cfg, causal=False, cross=True)
        for W in (self.attn.W_Q, self.attn.W_K, self.attn.W_V, self.attn.W_O):
            nn.init.normal_(W, std=0.02)

    def forward(self, hidden: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        B = hidden.shape[0]
        x = self.queries.unsqueeze(0).expand(B, -1, -1)  # (B, n_queries, d_model)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        return self.attn(x, context=hidden, mask=mask)


class PoolingClassifier(HookedModel, nn.Module):
    def __init__(self, cfg: PoolConfig, pad_id: int = 0):
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        block_cfg = cfg.model_config()
        self.encoder = Encoder(block_cfg, cfg.n_layers)
        self.pool = LearnedQueries(block_cfg, cfg.n_queries)
        self.norm = make_norm(block_cfg)
        self.W_cls = nn.Parameter(torch.empty(cfg.n_queries * cfg.d_model, cfg.n_classes))
        self.b_cls = nn.Parameter(torch.zeros(cfg.n_classes))
        self._hooks = name_hooks(self)
        init_weights(self, cfg.n_layers + 1)
        with torch.no_grad():  # LearnedQueries' own initialisation: distinct query vectors from the start
            self.pool.queries.normal_(std=1.0)

    def forward(self, src: torch.Tensor) -> torch.Tensor:
        """src (B, T) digit ids, padded with <pad> → class logits (B, n_classes)."""
        B, T = src.shape
        if T > self.cfg.src_ctx:
            raise GlassError(f"the input has {T} tokens; the model takes at most {self.cfg.src_ctx}")
        key_mask = src != self.pad_id  # (B, T)
        hidden = self.encoder(src, key_mask)  # (B, T, d_model)
        pooled = self.norm(self.pool(hidden, key_mask))  # (B, n_queries, d_model): one answer per query
        return pooled.reshape(B, -1) @ self.W_cls + self.b_cls  # (B, n_queries·d_model) → (B, n_classes)
