"""The lean decode step: one new token through a decoder-only GPT, for generation's inner loop.

GPT.forward is the glass box: hooks on every activation, masks for padded batches and query blocks,
checks on every input, a KV cache that grows. Generating one token a step needs none of that, and on
a CPU the many small operations around the weight products are a large share of a step (about a third
of an int4 step, by torch's profiler). So generation's loop runs `DecodeStep` instead, which computes
the same logits (tests/test_decode.py) with less around them:

    StaticKVCache   keys and values preallocated for `capacity` tokens, (n_layers, B, n_kv_heads,
                    capacity, d_head), each step writing one position in place: no per-step allocation,
                    no copying, no mask (the one new query may look at every cached key); float32, float16,
                    bfloat16, or int8 codes with a float32 scale per row (quantize_rows)
    DecodeStep      token (B, 1) → logits (B, d_vocab) float32: RoPE's cos/sin looked up once a step
                    (not twice a layer), attention of one query written out for that case, the norms,
                    the MLP and the unembedding reused from the model itself (their hooks are idle).

For Llama-style models whose matrices are all BlockWeight (weight modes int4, int8, q4a8), the whole
step runs in one C call instead (glassgpt/kernels/step.c: the same diagram, norms to logits, with the
static cache read by AVX2 code; tested equal to this torch step): `DecodeStep.ran` says which ran last,
"c" or "torch". Batches of several rows, bfloat16 caches, GPT-2-style models and the other weight modes
keep the torch step; GLASSGPT_KERNEL=torch turns both kernels off. The C step runs on one thread unless
$GLASSGPT_DECODE_THREADS asks for more (kernels/step.py's threads_asked says why).

torch.compile (Inductor) of this step was tried and dropped: on the 2-core machine it took 2–5 minutes to
compile SmolLM2's step, and the compiled step ran slower than this one (README, Weight modes and speed).

The prompt is still prefilled by GPT.forward (a StaticKVCache is also a KV cache it can fill), so
every number a prompt produces is the glass box's own.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F

from .errors import ContextLengthError, GlassError
from .kernels.step import CStep, why_not
from .model import GPT, project


class StaticLayerKV:
    """One layer's view of a StaticKVCache, with the interface of kv_cache.LayerKV (GPT.forward fills it)."""

    def __init__(self, cache: "StaticKVCache", i: int) -> None:
        self.cache, self.i = weakref.proxy(cache), i  # no reference cycle: a dropped cache is freed at once, not
        # at the next cyclic garbage collection (a chat recomputing each turn held ~12 MB more per turn till then)
        self.length = 0

    @property
    def k(self) -> torch.Tensor:  # (B, n_kv_heads, length, d_head), float32 as the model computes
        return self.cache.keys(self.i, self.length).float()

    @property
    def v(self) -> torch.Tensor:
        return self.cache.values(self.i, self.length).float()

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' keys and values (B, n_kv_heads, n, d_head) in place (rounded to the cache's
        dtype, as the decode step rounds them); return all so far, as the cache holds them."""
        end = self.length + k.shape[2]
        if end > self.cache.capacity:
            raise ContextLengthError(f"{end} tokens exceed the KV cache's capacity of {self.cache.capacity}")
        self.cache.write(self.i, self.length, k, v)
        self.length = end
        return self.k, self.v

    def set(self, k, v):
        raise GlassError("a static KV cache serves self-attention only")

    def select(self, rows: torch.Tensor) -> None:
        self.cache.select(rows)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., d_head) → int8 codes (..., d_head) and float32 scales (...), one scale a row (one position of one
    head): scale = max|x| / 127, code = round(x / scale) (half to even), so code·scale is within scale/2 of x.
    An all-zero row gets scale 0 and codes 0. step.c's store_kv rounds the same way, bit for bit (tested)."""
    x = x.float()
    scale = x.abs().amax(-1) / 127
    codes = torch.where(scale.unsqueeze(-1) > 0, x / scale.unsqueeze(-1), 0.0).round()
    return codes.to(torch.int8), scale


class StaticKVCache:
    """Keys and values of every layer for up to `capacity` tokens, allocated once.

    dtype: float32 keeps the glass box's numbers exactly; bfloat16 / float16 halve the bytes a step reads
    (attention then runs on the rounded keys and values); int8 stores each row of d_head keys (or values) as
    int8 codes and one float32 scale, row = codes · scale (quantize_rows): about a quarter of float32's bytes.
    The memory is reserved, not touched, until written.
    """

    def __init__(self, cfg, capacity: int, batch: int = 1, dtype: torch.dtype = torch.float32, device=None):
        self.capacity, self.dtype = capacity, dtype
        shape = (cfg.n_layers, batch, cfg.n_kv_heads, capacity, cfg.d_head)
        self.K = torch.empty(shape, dtype=dtype, device=device)  # (n_layers, B, n_kv_heads, capacity, d_head)
        self.V = torch.empty(shape, dtype=dtype, device=device)
        self.K_scale = self.V_scale = None  # int8: (n_layers, B, n_kv_heads, capacity) float32, a scale a row
        if dtype == torch.int8:
            self.K_scale = torch.empty(shape[:4], device=device)
            self.V_scale = torch.empty(shape[:4], device=device)
        self.layers = [StaticLayerKV(self, i) for i in range(cfg.n_layers)]

    @property
    def quantized(self) -> bool:
        return self.K_scale is not None

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def nbytes(self) -> int:
        scales = 2 * self.K_scale.numel() * 4 if self.quantized else 0
        return 2 * self.K.numel() * self.K.element_size() + scales

    def advance(self, n: int = 1) -> None:
        for layer in self.layers:
            layer.length += n

    def write(self, i: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Layer i's keys and values k, v (B, n_kv_heads, n, d_head) at positions start .. start + n, rounded to
        the cache's dtype (int8: quantize_rows)."""
        end = start + k.shape[2]
        if self.quantized:
            self.K[i, :, :, start: end], self.K_scale[i, :, :, start: end] = quantize_rows(k)
            self.V[i, :, :, start: end], self.V_scale[i, :, :, start: end] = quantize_rows(v)
        else:
            self.K[i, :, :, start: end] = k
            self.V[i, :, :, start: end] = v

    def keys(self, i: int, n: int) -> torch.Tensor:
        """Layer i's first n keys (B, n_kv_heads, n, d_head): in the cache's dtype, or float32 (int8: codes·scale)."""
        return self._rows(self.K, self.K_scale, i, n)

    def values(self, i: int, n: int) -> torch.Tensor:
        return self._rows(self.V, self.V_scale, i, n)

    @staticmethod
    def _rows(codes: torch.Tensor, scale: torch.Tensor | None, i: int, n: int) -> torch.Tensor:
        if scale is None:
            return codes[i, :, :, :n]
        return codes[i, :, :, :n].float() * scale[i, :, :, :n].unsqueeze(-1)

    def _tensors(self) -> list[str]:
        return ["K", "V"] + (["K_scale", "V_scale"] if self.quantized else [])

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` tokens (between generations, never inside one): one copy of what is held."""
        if capacity <= self.capacity:
            return
        n = self.length
        for name in self._tensors():  # K, V (…, capacity, d_head); scales (…, capacity)
            old = getattr(self, name)
            new = old.new_empty(old.shape[:3] + (capacity,) + old.shape[4:])
            new[:, :, :, :n] = old[:, :, :, :n]
            setattr(self, name, new)
        self.capacity = capacity

    def select(self, rows: torch.Tensor) -> None:
        """Keep only some batch rows."""
        for name in self._tensors():
            setattr(self, name, getattr(self, name)[:, rows])


def supports(model) -> bool:
    """The lean step covers decoder-only GPTs (not an encoder-decoder's decoder, whose blocks cross-attend)."""
    return isinstance(model, GPT) and all(b.cross_attn is None for b in model.blocks)


def cache_dtype(model) -> torch.dtype:
    """The dtype of the static cache generation makes: float16 where the C step serves the model (half the
    bytes its attention reads; on SmolLM2 int4 the 24 greedy continuations of tests/decode_prompts.py stay
    those of a float32 cache, README), else float32 (the glass box's own numbers). model.kv_dtype overrides
    (torch.int8: a quarter of the bytes, but only 14 of those 24 continuations stay, and on one core the step
    is no faster, README)."""
    chosen = getattr(model, "kv_dtype", None)
    if chosen is not None:
        return chosen
    return torch.float16 if supports(model) and not why_not(model) else torch.float32


class DecodeStep:
    """token ids (B, 1) at position cache.length → logits (B, d_vocab) float32, the same as
    GPT.forward(tokens, cache)[:, -1] (tested), writing the token's keys and values into the cache."""

    def __init__(self, model: GPT, c: bool = True, threads: int = 0):
        if not supports(model):
            raise GlassError("the lean decode step serves decoder-only GPT models")
        self.model = model
        self.why_not_c = why_not(model) if c else "asked for the torch step"
        self.c = None if self.why_not_c else CStep(model, threads=threads)  # the whole step in one C call
        self.ran = ""  # "c" or "torch": which step the last call took
        self.rope = model.blocks[0].attn.rope  # one table shared by every layer (or None: learned positions)
        if self.rope is not None:  # rotate(x) = x·cos + [-x2, x1]·sin = x·cos + roll(x)·(sign·sin)
            half = self.rope.cos.shape[-1] // 2
            self.sign = torch.cat([-torch.ones(half), torch.ones(half)]).to(self.rope.sin)  # (d_head,)

    def __call__(self, tokens: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
        pos = cache.length
        if pos >= cache.capacity:
            raise ContextLengthError(f"{pos + 1} tokens exceed the KV cache's capacity of {cache.capacity}")
        if self.rope is not None:
            self.rope.extend(pos + 1)  # the table grows with the positions used (model.RoPE)
        if self.c is not None and self.c.takes(tokens, cache):
            logits, self.ran = self.c(tokens, cache, pos), "c"
        else:
            logits, self.ran = self.step(tokens, cache, pos), "torch"
        cache.advance(1)
        return logits

    def step(self, tokens: torch.Tensor, cache: StaticKVCache, pos: int) -> torch.Tensor:
        model = self.model
        x = model.embed.W_E[tokens]  # (B, 1, d_model)
        if model.embed.W_pos is not None:
            x = x + model.embed.W_pos[pos]
        cos = sin = None
        if self.rope is not None:
            cos, sin = self.rope.cos[pos], self.rope.sin[pos] * self.sign  # (d_head,) each: this position's rotation
        for i, block in enumerate(model.blocks):
            x = x + self.attention(block.attn, block.ln1(x), cache, i, pos, cos, sin)
            x = x + block.mlp(block.ln2(x))
        return model.unembed(x, model.embed.W_E)[:, -1]  # (B, d_vocab)

    @staticmethod
    def attention(attn, x, cache: StaticKVCache, i: int, pos: int, cos, sin) -> torch.Tensor:
        """One query: x (B, 1, d_model) → the attention sub-layer's output (B, 1, d_model).

        The new key and value go to layer i of the cache at `pos`; attention reads its positions 0..pos.
        """
        B = x.shape[0]
        H, H_kv, d_head = attn.n_heads, attn.n_kv_heads, attn.d_head
        q = project(x, attn.W_Q, attn.b_Q).view(B, H, 1, d_head)  # with one token, (B, 1, H, d) is (B, H, 1, d)
        k = project(x, attn.W_K, attn.b_K).view(B, H_kv, 1, d_head)
        v = project(x, attn.W_V, attn.b_V).view(B, H_kv, 1, d_head)
        if cos is not None:
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        cache.write(i, pos, k, v)  # in place: the cache was allocated once
        keys, values = cache.keys(i, pos + 1), cache.values(i, pos + 1)  # (B, H_kv, pos + 1, d_head)
        if keys.dtype == torch.float32:  # (an int8 cache reads as float32: codes·scale)
            z = F.scaled_dot_product_attention(q, keys, values, enable_gqa=H != H_kv)  # (B, H, 1, d_head)
        else:
            z = attend_one(q, keys, values)
        return project(z.reshape(B, 1, H * d_head), attn.W_O, attn.b_O)  # (B, 1, d_model)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE at one position, as model.RoPE rotates: x·cos + [-x2, x1]·sin, where [-x2, x1] is x rolled by
    half its length with the first half negated (the sign is folded into signed_sin). x (..., d_head)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


def attend_one(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v for one query per head against half-precision keys and values, grouped-query:
    q (B, H, 1, d) float32, keys/values (B, H_kv, S, d) → (B, H, 1, d) float32. Scores and softmax in float32."""
    B, H, _, d = q.shape
    H_kv = keys.shape[1]
    qg = q.view(B, H_kv, H // H_kv, d).to(keys.dtype)  # the query heads each key/value head serves
    scores = (qg @ keys.transpose(-2, -1)).float() / math.sqrt(d)  # (B, H_kv, H/H_kv, S)
    pattern = scores.softmax(dim=-1)
    z = pattern.to(values.dtype) @ values  # (B, H_kv, H/H_kv, d)
    return z.float().view(B, H, 1, d)
