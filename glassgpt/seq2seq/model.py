"""An encoder–decoder transformer made of the GPT's own parts (T5: queries from another sequence).

    source → Embedding → Block(causal=False) × n_enc_layers → norm → memory
    target → Embedding → Block(causal=True, cross=True) × n_dec_layers → Unembedding → logits
                                       ↑ cross-attention: queries from the target, keys/values from memory

The encoder reads its source in both directions (no causal mask; only <pad> keys are hidden).
Each decoder block first attends causally to the target so far, then cross-attends to the
encoded source, then runs its MLP. Activation names follow the GPT's with a prefix:
`encoder.blocks.{i}.attn.pattern`, `decoder.blocks.{i}.cross_attn.pattern` (B, H, T, S), ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, from_dict
from ..errors import GlassError, check_tokens
from ..hooks import Hook, HookedModel, name_hooks
from ..kv_cache import KVCache
from ..model import Block, Embedding, Unembedding, init_weights, make_norm


@dataclass
class Seq2SeqConfig:
    src_vocab: int = 13
    tgt_vocab: int = 28
    src_ctx: int = 16  # longest source, in characters
    tgt_ctx: int = 64  # longest decoder input (<bos> + target)
    d_model: int = 64
    n_heads: int = 4
    n_enc_layers: int = 2
    n_dec_layers: int = 2
    d_mlp: int | None = None  # None: 4 * d_model
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        for name in ("src_vocab", "tgt_vocab", "src_ctx", "tgt_ctx", "d_model", "n_heads", "n_enc_layers",
                     "n_dec_layers", "d_mlp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise GlassError(f"Seq2SeqConfig.{name} must be a positive integer, got {value!r}")
        try:
            self.block_config()  # the GPT's own checks (d_model divisible by n_heads, ...)
        except ValueError as e:
            raise GlassError(f"Seq2SeqConfig: {e}") from None

    def block_config(self, d_vocab: int | None = None, n_ctx: int | None = None) -> ModelConfig:
        """The ModelConfig that the shared parts (Embedding, Block, Unembedding) are built from."""
        return ModelConfig(d_vocab=d_vocab or self.tgt_vocab, n_ctx=n_ctx or max(self.src_ctx, self.tgt_ctx),
                           d_model=self.d_model, n_layers=self.n_enc_layers + self.n_dec_layers,
                           n_heads=self.n_heads, d_mlp=self.d_mlp, positions="learned", norm="layernorm",
                           mlp="gelu", tie_embeddings=True, dropout=self.dropout, name="seq2seq")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Seq2SeqConfig":
        return from_dict(cls, data, GlassError)


class Encoder(nn.Module):
    """Embedding → bidirectional Blocks → norm: one vector per source token, each informed by all the others."""

    def __init__(self, cfg: ModelConfig, n_layers: int):
        super().__init__()
        self.n_ctx = cfg.n_ctx
        self.embed = Embedding(cfg)
        self.hook_embed = Hook()
        self.blocks = nn.ModuleList(Block(cfg, causal=False) for _ in range(n_layers))
        self.norm = make_norm(cfg)
        self.hook_out = Hook()

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src: (B, S) ids; src_mask: (B, S) True for real tokens → memory (B, S, d_model)."""
        B, S = src.shape
        positions = torch.arange(S, device=src.device).unsqueeze(0)  # (1, S)
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S): every query may look at every real key
        x = self.hook_embed(self.embed(src, positions))  # (B, S, d_model)
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.hook_out(self.norm(x))


class Decoder(nn.Module):
    """Embedding → Blocks with causal self-attention and cross-attention → Unembedding."""

    def __init__(self, cfg: ModelConfig, n_layers: int):
        super().__init__()
        self.embed = Embedding(cfg)
        self.hook_embed = Hook()
        self.blocks = nn.ModuleList(Block(cfg, causal=True, cross=True) for _ in range(n_layers))
        self.unembed = Unembedding(cfg)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor | None,
        memory_mask: torch.Tensor,
        cache: KVCache | None = None,
        cross_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """tgt: (B, T) ids; memory: (B, S, d_model) (None once cross_cache holds its keys/values) → (B, T, d_vocab).

        cache: the decoder's own keys/values of earlier target tokens (self-attention).
        cross_cache: the source's keys/values per layer, computed on the first call and reused.
        """
        B, T = tgt.shape
        offset = 0 if cache is None else cache.length
        positions = torch.arange(offset, offset + T, device=tgt.device).unsqueeze(0)  # (1, T)
        context_mask = memory_mask[:, None, None, :]  # (B, 1, 1, S): no query reads source padding
        x = self.hook_embed(self.embed(tgt, positions))  # (B, T, d_model)
        for i, block in enumerate(self.blocks):
            x = block(x, positions=positions, cache=None if cache is None else cache.layers[i],
                      context=memory, context_mask=context_mask,
                      cross_cache=None if cross_cache is None else cross_cache.layers[i])
        return self.unembed(x, self.embed.W_E)


class EncoderDecoder(HookedModel, nn.Module):
    """A translator: encode the source once, then decode the target one token at a time."""

    def __init__(self, cfg: Seq2SeqConfig, pad_id: int = 0):
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        self.encoder = Encoder(cfg.block_config(cfg.src_vocab, cfg.src_ctx), cfg.n_enc_layers)
        self.decoder = Decoder(cfg.block_config(cfg.tgt_vocab, cfg.tgt_ctx), cfg.n_dec_layers)
        self._hooks = name_hooks(self, strip_prefix="decoder.unembed.")
        init_weights(self, cfg.n_enc_layers + cfg.n_dec_layers)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt (B, T) = <bos> + target → logits (B, T, tgt_vocab)."""
        memory, src_mask = self.encode(src)
        check_tokens(tgt, self.cfg.tgt_vocab, self.cfg.tgt_ctx, what="target")
        return self.decoder(tgt, memory, src_mask)

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) → memory (B, S, d_model) and the source mask (B, S), True for real tokens."""
        check_tokens(src, self.cfg.src_vocab, self.cfg.src_ctx, what="source")
        src_mask = src != self.pad_id  # (B, S)
        if not bool(src_mask.any(dim=1).all()):
            raise GlassError("every source needs at least one token that is not <pad>")
        return self.encoder(src, src_mask), src_mask

    def decode(self, tgt, memory, src_mask, cache=None, cross_cache=None) -> torch.Tensor:
        """One decoder call (see Decoder.forward); with caches, tgt holds only the new tokens."""
        offset = 0 if cache is None else cache.length
        check_tokens(tgt, self.cfg.tgt_vocab, self.cfg.tgt_ctx, offset, "target")
        return self.decoder(tgt, memory, src_mask, cache, cross_cache)

    def new_caches(self) -> tuple[KVCache, KVCache]:
        """(self-attention cache, cross-attention cache) for the decoder."""
        return KVCache(self.cfg.n_dec_layers), KVCache(self.cfg.n_dec_layers)
