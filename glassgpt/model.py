"""The transformer of the seed, top to bottom (G2):

    tokens → Embedding → (Attention → MLP) × n_layers → Unembedding → logits

    x = W_E[tokens] (+ W_pos)                                    Embedding       (B, T, d_model)
    for each block:
        x = x + Attention(norm(x))    softmax(q·kᵀ/√d_head)·v·W_O   the residual stream, written to
        x = x + MLP(norm(x))          GELU(x·W_up)·W_down           by every layer (T7)
    logits = norm(x)·W_U                                         Unembedding     (B, T, d_vocab)

Weights are named like the maths (W_E, W_Q, W_K, W_V, W_O, W_up, W_down, W_U) and
activations like the seed (q, k, v, scores, pattern, z, resid), never the other way
round (T9). Every activation passes a `Hook` so it can be read or replaced. Dimension names
are listed in `glassgpt.config`. Nothing here is about speed: the KV cache lives in
`glassgpt.kv_cache`, weights stored for fast decoding in `glassgpt.fast`; the one fused kernel
(attention without materialising the pattern) is marked as the alternative it is.
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import check_tokens
from .hooks import Hook, HookedModel, name_hooks
from .kv_cache import KVCache, LayerKV


def project(x: torch.Tensor, W: torch.Tensor | nn.Module, b: torch.Tensor | None = None) -> torch.Tensor:
    """x·W + b: every weight multiplication in the model. W is a (d_in, d_out) parameter, or — once
    glassgpt.fast has packed the weights for decoding — a module of the same name (glassgpt.quant) that
    computes x·W from its own copy. That swap is the whole interface between the model and speed tricks."""
    y = W(x) if isinstance(W, nn.Module) else x @ W
    return y if b is None else y + b


# ----------------------------------------------------------------------------- norms


class LayerNorm(nn.Module):
    """GPT-2's norm: centre, scale to unit variance, then w·x + b."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))
        self.b = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w, self.b, self.eps)


class RMSNorm(nn.Module):
    """Llama's norm: scale to unit root-mean-square (no centring, no bias), then w·x."""

    def __init__(self, d_model: int, eps: float):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.w, self.eps)


def make_norm(cfg: ModelConfig) -> nn.Module:
    return LayerNorm(cfg.d_model, cfg.norm_eps) if cfg.norm == "layernorm" else RMSNorm(cfg.d_model, cfg.norm_eps)


# ----------------------------------------------------------------------------- embedding


class Embedding(nn.Module):
    """Token → vector (G3): a row of W_E, plus a learned position vector for GPT-2 style models."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))  # (d_vocab, d_model)
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model)) if cfg.positions == "learned" else None
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.W_E[tokens]  # (B, T, d_model)
        if self.W_pos is not None:
            x = x + self.W_pos[positions]  # positions: (B or 1, T)
        return self.dropout(x)


class RoPE(nn.Module):
    """Rotary positions (Llama): rotate each (i, i + d_head/2) pair of q and k by angle pos·θ^(-2i/d_head).

    The rotation makes q·k depend on the distance between positions, not on where they are.
    cos and sin are tabulated for the positions used so far: the table starts at FIRST positions (at most
    n_ctx) and doubles when a later position comes (SmolLM2's whole table, 8192 × 64, is 4 MB of memory
    that a short conversation never reads).
    """

    FIRST = 1024

    def __init__(self, d_head: int, n_ctx: int, theta: float):
        super().__init__()
        self.d_head, self.n_ctx, self.theta = d_head, n_ctx, theta
        self.register_buffer("cos", torch.empty(0, d_head), persistent=False)
        self.register_buffer("sin", torch.empty(0, d_head), persistent=False)
        self.extend(min(n_ctx, self.FIRST))

    def extend(self, n: int) -> None:
        """Make the table cover positions 0..n-1 (doubling it, up to n_ctx); the rows it has keep their values."""
        if n <= len(self.cos):
            return
        n = min(self.n_ctx, max(n, 2 * len(self.cos)))
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, self.d_head, 2, dtype=torch.float32) / self.d_head))
        angles = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)  # (n, d_head/2)
        angles = torch.cat([angles, angles], dim=-1)  # (n, d_head)
        self.cos, self.sin = angles.cos().to(self.cos), angles.sin().to(self.sin)  # (the buffers' device, dtype)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (B, H, T, d_head); positions: (B or 1, T)
        if len(self.cos) < self.n_ctx and positions.numel():  # a position beyond the table so far
            self.extend(int(positions.max()) + 1)
        cos = self.cos[positions].unsqueeze(1).to(x.dtype)  # (B or 1, 1, T, d_head)
        sin = self.sin[positions].unsqueeze(1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * cos + rotated * sin


# ----------------------------------------------------------------------------- attention


def attention_mask(T: int, S: int, causal: bool, key_mask: torch.Tensor | None = None,
                   device=None) -> torch.Tensor | None:
    """Which keys each query may look at: boolean (B or 1, 1, T, S), True where it may; None where all may.

    causal (T6): query i is the token at position S - T + i (a cache holds the S - T before it) and
        sees keys 0..S - T + i; a single query (the newest token) sees them all.
    key_mask: (B, S), False for padding keys. A padding query still sees itself under a causal mask,
        or its softmax row would be all -inf (NaN).
    """
    mask = None
    if causal and T > 1:
        i = torch.arange(T, device=device).unsqueeze(1) + (S - T)  # (T, 1): each query's position
        j = torch.arange(S, device=device).unsqueeze(0)  # (1, S): each key's position
        mask = (j <= i).view(1, 1, T, S)
    if key_mask is not None:
        keys = key_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        mask = keys if mask is None else mask & keys
        if causal:
            mask = mask.clone()
            mask[..., torch.arange(T), torch.arange(S - T, S)] = True  # (B, 1, T, S)
    return mask


class Attention(nn.Module):
    """softmax(Q·Kᵀ/√d_k)·V, per head, then the output projection W_O (T1–T3, T8–T10).

    Queries come from `x`; keys and values come from `context` when given (cross-attention,
    T5) and from `x` otherwise (self-attention). `causal` applies the mask of T6.
    `attend` is the maths, step by step. `attend_fused` computes the same in one kernel without
    materialising `scores` and `pattern`; it runs whenever no hook asks for them and `explicit` is off.
    """

    def __init__(self, cfg: ModelConfig, causal: bool = True, cross: bool = False, rope: "RoPE | None" = None):
        super().__init__()
        H, H_kv, d_head, D = cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_model
        self.n_heads, self.n_kv_heads, self.d_head = H, H_kv, d_head
        self.causal, self.cross = causal, cross
        self.explicit = False  # True: always the step-by-step path
        # Q, K, V = X·W (T9): the weights are parameters, the products are activations.
        self.W_Q = nn.Parameter(torch.empty(D, H * d_head))
        self.W_K = nn.Parameter(torch.empty(D, H_kv * d_head))
        self.W_V = nn.Parameter(torch.empty(D, H_kv * d_head))  # per head: the "down" projection of T10
        self.W_O = nn.Parameter(torch.empty(H * d_head, D))  # per head: the "up" projection of T10
        if cfg.attn_bias:
            self.b_Q = nn.Parameter(torch.zeros(H * d_head))
            self.b_K = nn.Parameter(torch.zeros(H_kv * d_head))
            self.b_V = nn.Parameter(torch.zeros(H_kv * d_head))
            self.b_O = nn.Parameter(torch.zeros(D))
        else:
            self.b_Q = self.b_K = self.b_V = self.b_O = None
        if cfg.positions == "rope" and not cross:  # one RoPE table may be shared by every layer
            self.rope = rope if rope is not None else RoPE(d_head, cfg.n_ctx, cfg.rope_theta)
        else:
            self.rope = None
        self.dropout_p = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.hook_q, self.hook_k, self.hook_v = Hook(), Hook(), Hook()
        self.hook_scores, self.hook_pattern, self.hook_z, self.hook_out = Hook(), Hook(), Hook(), Hook()

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        cache: LayerKV | None = None,
    ) -> torch.Tensor:
        """x: (B, T, d_model) → (B, T, d_model).

        context: (B, S, d_model) keys/values source for cross-attention.
        mask: boolean (B or 1, 1, T, S), True where a query may look (see attention_mask); None means
            "causal" for causal attention and "everything" otherwise.
        positions: (B or 1, T) absolute positions of x's tokens (RoPE).
        cache: this layer's keys and values from earlier calls (glassgpt.kv_cache).
        """
        B, T, _ = x.shape
        H, H_kv, d_head = self.n_heads, self.n_kv_heads, self.d_head
        q = project(x, self.W_Q, self.b_Q).view(B, T, H, d_head).transpose(1, 2)  # (B, H, T, d_head)
        if self.cross and cache is not None and cache.k is not None:
            k, v = cache.k, cache.v  # the source was encoded once; reuse its keys and values
        else:
            src = x if context is None else context
            S = src.shape[1]
            k = project(src, self.W_K, self.b_K).view(B, S, H_kv, d_head).transpose(1, 2)  # (B, H_kv, S, d_head)
            v = project(src, self.W_V, self.b_V).view(B, S, H_kv, d_head).transpose(1, 2)  # (B, H_kv, S, d_head)
            if self.rope is not None:
                q, k = self.rope(q, positions), self.rope(k, positions)
            if cache is not None:
                k, v = cache.set(k, v) if self.cross else cache.append(k, v)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)

        if self.explicit or self.hook_scores.active or self.hook_pattern.active:
            z = self.attend(q, k, v, mask)
        else:
            z = self.attend_fused(q, k, v, mask)
        z = self.hook_z(z)  # (B, H, T, d_head)
        z = z.transpose(1, 2).reshape(B, T, H * d_head)  # (B, T, H·d_head): heads side by side
        out = project(z, self.W_O, self.b_O)  # (B, T, d_model): each head's "up" projection, summed
        return self.hook_out(self.resid_dropout(out))

    def attend(self, q, k, v, mask):
        """The maths: q (B, H, T, d_head), k and v (B, H_kv, S, d_head) → z (B, H, T, d_head)."""
        T, S = q.shape[2], k.shape[2]
        if self.n_kv_heads != self.n_heads:  # grouped-query: each key/value head serves n_heads/n_kv_heads queries
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # (B, H, S, d_head)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, T, S): how well each query matches each key
        scores = self.hook_scores(scores)
        if mask is None:
            mask = attention_mask(T, S, self.causal, device=q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # T6: the future is -inf before the softmax
        pattern = torch.softmax(scores, dim=-1)  # (B, H, T, S): each row sums to 1
        pattern = self.hook_pattern(pattern)
        if self.training and self.dropout_p > 0:
            pattern = F.dropout(pattern, self.dropout_p)
        return pattern @ v  # (B, H, T, d_head): weighted sum of values

    # ---- the alternative: the same as attend(), in one fused kernel (tests/test_model.py checks they agree)
    def attend_fused(self, q, k, v, mask):
        T, S = q.shape[2], k.shape[2]
        is_causal = self.causal and mask is None and T > 1  # the kernel's own causal mask, for queries from key 0
        if is_causal and T != S:  # a causal query block that does not start at key 0 needs an explicit mask
            mask, is_causal = attention_mask(T, S, True, device=q.device), False
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout_p if self.training else 0.0, enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B, H, T, d_head)


# ----------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """Up-projection to d_mlp → non-linearity → down-projection back to d_model, per token (G5).

    `gelu`: GELU(x·W_up + b_up)·W_down (GPT-2). `swiglu`: (SiLU(x·W_gate) ⊙ x·W_up)·W_down (Llama).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, d_mlp = cfg.d_model, cfg.d_mlp
        self.kind = cfg.mlp
        self.W_gate = nn.Parameter(torch.empty(D, d_mlp)) if cfg.mlp == "swiglu" else None
        self.W_up = nn.Parameter(torch.empty(D, d_mlp))
        self.W_down = nn.Parameter(torch.empty(d_mlp, D))
        self.b_gate = nn.Parameter(torch.zeros(d_mlp)) if cfg.mlp_bias and cfg.mlp == "swiglu" else None
        self.b_up = nn.Parameter(torch.zeros(d_mlp)) if cfg.mlp_bias else None
        self.b_down = nn.Parameter(torch.zeros(D)) if cfg.mlp_bias else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_pre, self.hook_post, self.hook_out = Hook(), Hook(), Hook()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "gelu":
            pre = self.hook_pre(project(x, self.W_up, self.b_up))  # (B, T, d_mlp)
            post = F.gelu(pre, approximate="tanh")
        else:
            pre = self.hook_pre(project(x, self.W_gate, self.b_gate))  # (B, T, d_mlp): the gate
            post = F.silu(pre) * project(x, self.W_up, self.b_up)
        post = self.hook_post(post)  # (B, T, d_mlp)
        out = project(post, self.W_down, self.b_down)  # (B, T, d_model)
        return self.hook_out(self.dropout(out))


# ----------------------------------------------------------------------------- block


class Block(nn.Module):
    """The transformer block (G8): x + Attention(norm(x)), then x + MLP(norm(x)) — pre-norm, two residual adds (T7).

    With `cross=True` (the decoder of an encoder-decoder, glassgpt.seq2seq) a cross-attention sub-layer
    sits between the two, its queries from x and its keys and values from `context`.
    """

    def __init__(self, cfg: ModelConfig, causal: bool = True, cross: bool = False, rope: "RoPE | None" = None):
        super().__init__()
        self.hook_resid_pre = Hook()
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, causal=causal, rope=rope)
        if cross:
            self.ln_cross = make_norm(cfg)
            self.cross_attn = Attention(cfg, causal=False, cross=True)
        else:
            self.ln_cross = self.cross_attn = None
        self.hook_resid_mid = Hook()
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.hook_resid_post = Hook()

    def forward(self, x, mask=None, positions=None, cache=None, context=None, context_mask=None, cross_cache=None):
        x = self.hook_resid_pre(x)  # (B, T, d_model): the residual stream entering the block
        x = x + self.attn(self.ln1(x), mask=mask, positions=positions, cache=cache)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.ln_cross(x), context=context, mask=context_mask, cache=cross_cache)
        x = self.hook_resid_mid(x)
        x = x + self.mlp(self.ln2(x))
        return self.hook_resid_post(x)


# ----------------------------------------------------------------------------- unembedding


class Unembedding(nn.Module):
    """Final norm, then vector → logits over the vocabulary (G12). Tied models use W_U = W_Eᵀ."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = make_norm(cfg)
        self.W_U = None if cfg.tie_embeddings else nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.hook_final_norm, self.hook_logits = Hook(), Hook()

    def matrix(self, W_E: torch.Tensor) -> torch.Tensor:
        """W_U (d_model, d_vocab): the stored one, or W_Eᵀ when tied. Models expose it as `model.W_U`."""
        return W_E.T if self.W_U is None else self.W_U

    def forward(self, x: torch.Tensor, W_E: torch.Tensor) -> torch.Tensor:
        x = self.hook_final_norm(self.norm(x))  # (B, T, d_model)
        return self.hook_logits(project(x, self.matrix(W_E)))  # (B, T, d_vocab)


# ----------------------------------------------------------------------------- GPT


class GPT(HookedModel, nn.Module):
    """Embedding → (Attention → MLP) × n_layers → Unembedding: a decoder-only transformer (G2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg)
        self.hook_embed = Hook()
        rope = RoPE(cfg.d_head, cfg.n_ctx, cfg.rope_theta) if cfg.positions == "rope" else None  # shared by all layers
        self.blocks = nn.ModuleList(Block(cfg, rope=rope) for _ in range(cfg.n_layers))
        self.unembed = Unembedding(cfg)
        self._hooks = name_hooks(self, strip_prefix="unembed.")
        self.init_weights()

    def init_weights(self, std: float = 0.02) -> None:
        init_weights(self, self.cfg.n_layers, std)

    # -- the forward pass

    def forward(
        self,
        tokens: torch.Tensor,
        cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """tokens: (B, T) ids → logits (B, T, d_vocab), or (B, 1, d_vocab) for the last position only.

        cache: keys and values of earlier tokens (the new ones are appended).
        positions: (B, T) absolute positions; default offset..offset+T-1.
        key_mask: (B, offset+T) boolean, False for padding tokens no query may look at.
        """
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        B, T = tokens.shape
        offset = 0 if cache is None else cache.length
        check_tokens(tokens, self.cfg.d_vocab, self.cfg.n_ctx, offset)
        if positions is None:
            positions = torch.arange(offset, offset + T, device=tokens.device).unsqueeze(0)  # (1, T)
        mask = None  # None: causal from key 0 for a fresh pass or a one-token step (the fused kernel's fast case)
        if key_mask is not None or (offset > 0 and T > 1):
            mask = attention_mask(T, offset + T, True, key_mask, tokens.device)  # (B or 1, 1, T, offset+T)
        x = self.hook_embed(self.embed(tokens, positions))  # (B, T, d_model)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, positions=positions, cache=None if cache is None else cache.layers[i])
        if last_only:  # generation needs only the next token's logits: skip T-1 rows of the biggest matmul
            x = x[:, -1:]
        return self.unembed(x, self.embed.W_E)

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding (d_model, d_vocab), tied or not: logits = final_norm(x)·W_U."""
        return self.unembed.matrix(self.embed.W_E)

    def new_cache(self) -> KVCache:
        return KVCache(self.cfg.n_layers)

    # seeing inside: run_with_cache(), run_with_hooks(), hooks(), hook_names() come from HookedModel


@torch.no_grad()
def init_weights(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2's initialisation: N(0, std), biases 0, norms 1, residual-stream writers scaled by 1/√(2·n_layers)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("b_"):
            nn.init.zeros_(p)
        elif leaf == "w":
            nn.init.ones_(p)
        elif leaf in ("W_O", "W_down"):
            nn.init.normal_(p, std=std / math.sqrt(2 * n_layers))
        else:
            nn.init.normal_(p, std=std)


def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Probabilities e^(x/T) / Σ e^(x/T) (G12). T → 0 tends to one-hot on the argmax; large T flattens.

    T = 0 means greedy, everywhere in glassgpt (the sampler, the web page's distribution.js): all the mass
    on the largest logit, and of tied largest logits on the lowest token id.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        top = logits.argmax(dim=dim, keepdim=True)  # the first (lowest) index among ties
        return torch.zeros_like(logits).scatter_(dim, top, 1.0)
    return torch.softmax(logits / temperature, dim=dim)
