"""The binding of step.c: one whole decode step of a Llama-style GPT in one C call.

`why_not(model)` says why a model cannot take the C step ("" when it can): it must be a decoder-only
GPT whose blocks are all Llama's (RMSNorm, RoPE, SwiGLU, no biases, no cross-attention), with every
layer matrix and the unembedding stored as BlockWeight (weight modes int4, int8, q4a8) and the
kernel library built. `CStep(model)` gathers every pointer the C code reads once, into ctypes
structures that mirror step.c's (Matrix, Layer, Model), and keeps the tensors they point to alive;
calling it runs one token through the whole stack. glassgpt.decode.DecodeStep uses it when the model
qualifies and the cache (a StaticKVCache) is float32, float16 or int8 with one row, and its torch step otherwise.
"""

from __future__ import annotations

import ctypes
import os
import threading

import torch

from ..errors import GlassError
from ..model import GPT
from ..quant import BlockRows, BlockWeight
from . import ISAS, kernel, library

MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_gate", "W_up", "W_down")
CACHE_DTYPES = {torch.float32: 0, torch.float16: 1, torch.int8: 2}  # the cache dtypes step.c reads: its `type`


class Matrix(ctypes.Structure):  # step.c's Matrix: one BlockWeight
    _fields_ = [("codes", ctypes.c_void_p), ("dm", ctypes.c_void_p), ("d_in", ctypes.c_int32),
                ("d_out", ctypes.c_int32), ("bits", ctypes.c_int32), ("terms", ctypes.c_int32)]


class Layer(ctypes.Structure):  # step.c's Layer
    _fields_ = [("w_ln1", ctypes.c_void_p), ("w_ln2", ctypes.c_void_p)] + [(name, Matrix) for name in MATRICES]


class Model(ctypes.Structure):  # step.c's Model
    _fields_ = [(name, ctypes.c_int32) for name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_head",
                                                    "d_mlp", "d_vocab", "n_ctx")] + [
        ("eps", ctypes.c_float), ("W_E", ctypes.c_void_p), ("W_E_row", ctypes.c_int64), ("W_E_col", ctypes.c_int64),
        ("cos", ctypes.c_void_p), ("sin", ctypes.c_void_p), ("layers", ctypes.POINTER(Layer)),
        ("w_final", ctypes.c_void_p), ("W_U", Matrix)]


class Cache(ctypes.Structure):  # step.c's Cache: a StaticKVCache of one row
    _fields_ = [("K", ctypes.c_void_p), ("V", ctypes.c_void_p), ("K_scale", ctypes.c_void_p),
                ("V_scale", ctypes.c_void_p), ("type", ctypes.c_int32), ("capacity", ctypes.c_int32)]


def why_not(model) -> str:
    """Why `model` cannot take the C step, or "" when it can."""
    if library() is None:
        return "the kernel library is not built"
    if not isinstance(model, GPT):
        return "not a decoder-only GPT"
    cfg = model.cfg
    if (cfg.positions, cfg.norm, cfg.mlp) != ("rope", "rmsnorm", "swiglu"):
        return "not a Llama-style model (RoPE, RMSNorm, SwiGLU)"
    if cfg.d_head % 8 or cfg.d_head > 512 or cfg.n_heads % cfg.n_kv_heads:
        return f"d_head {cfg.d_head} is not a multiple of 8 up to 512"
    rope = model.blocks[0].attn.rope
    norms = [model.unembed.norm] + [n for b in model.blocks for n in (b.ln1, b.ln2)]
    for b in model.blocks:
        attn, mlp = b.attn, b.mlp
        if b.cross_attn is not None or attn.rope is not rope:
            return "a block cross-attends or has its own RoPE table"
        if any(t is not None for t in (attn.b_Q, attn.b_K, attn.b_V, attn.b_O, mlp.b_gate, mlp.b_up, mlp.b_down)):
            return "a layer has biases"
        for name in MATRICES:
            W = getattr(attn if name in MATRICES[:4] else mlp, name)
            if not isinstance(W, BlockWeight) or W.kernel == "torch":
                return f"{name} is not stored as blocks (weight modes int4, int8, q4a8)"
    if not isinstance(model.unembed.W_U, BlockWeight):
        return "the unembedding is not stored as blocks"
    if len({n.eps for n in norms}) != 1 or any(n.w.dtype != torch.float32 for n in norms):
        return "the norms differ in eps or dtype"
    W_E = model.embed.W_E
    if W_E.dtype != torch.float32 or len(W_E.shape) != 2 or rope.cos.dtype != torch.float32:
        return "W_E or RoPE's table is not float32"
    return ""


def threads_asked() -> int:
    """Threads sharing each product of the C step, from $GLASSGPT_DECODE_THREADS: a number, or "torch" (0 here:
    torch.get_num_threads() at each call). Unset: 1. Not torch's choice by default, because on the 2-vCPU
    machine this was written on, shared with other jobs, two threads made a step 2.5-3× slower (README)."""
    asked = os.environ.get("GLASSGPT_DECODE_THREADS", "1")
    if asked == "torch":
        return 0
    if not asked.isdigit() or not 1 <= int(asked) <= 16:
        raise GlassError(f"GLASSGPT_DECODE_THREADS must be a number from 1 to 16 or 'torch', got {asked!r}")
    return int(asked)


class CStep:
    """token (1, 1) at position pos → logits (1, d_vocab) float32 through step.c, writing the token's keys
    and values into a StaticKVCache: K, V (n_layers, 1, n_kv_heads, capacity, d_head) float32 or float16, or
    int8 with K_scale, V_scale (n_layers, 1, n_kv_heads, capacity) float32.

    isa: the kernel version ("avx512-vnni" or "avx2"; default the one chosen for this CPU). threads: how many
    threads share each product (kernels/pool.c); default `threads_asked()`."""

    def __init__(self, model, isa: str = "", threads: int = 0):
        reason = why_not(model)
        if reason:
            raise GlassError(f"the C decode step cannot run this model: {reason}")
        self.lib = library()
        self.lib.decode_step.restype = ctypes.c_int
        self.lib.decode_step.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p,
                                         ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                         ctypes.c_int]
        self.lib.step_scratch_bytes.restype = ctypes.c_size_t
        self.lib.step_scratch_bytes.argtypes = [ctypes.c_void_p]
        self.isa = ISAS[isa or kernel()][0]
        self.threads = threads or threads_asked()  # 0: torch.get_num_threads() at each call
        self.cfg = cfg = model.cfg
        self.keep: list[torch.Tensor] = []  # every tensor a pointer below points into
        layers = (Layer * cfg.n_layers)()
        for layer, b in zip(layers, model.blocks):
            layer.w_ln1, layer.w_ln2 = self._ptr(b.ln1.w), self._ptr(b.ln2.w)
            for name in MATRICES:
                setattr(layer, name, self._matrix(getattr(b.attn if name in MATRICES[:4] else b.mlp, name)))
        rope, W_E = model.blocks[0].attn.rope, model.embed.W_E
        self.rows = W_E if isinstance(W_E, BlockRows) else None  # W_E in the unembedding's blocks (fast.py) ...
        E = torch.empty(1, cfg.d_model) if self.rows is not None else W_E.detach()  # ... its row goes to E a step
        self.keep.append(E)
        self.E = E
        self.model = Model(cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp,
                           cfg.d_vocab, 0, model.unembed.norm.eps, E.data_ptr(),
                           0 if self.rows is not None else E.stride(0), E.stride(1), None, None, layers,
                           self._ptr(model.unembed.norm.w), self._matrix(model.unembed.W_U))
        self.layers = layers
        if tuple(rope.cos.shape) != (rope.cos.shape[0], cfg.d_head) or tuple(W_E.shape) != (cfg.d_vocab, cfg.d_model):
            raise GlassError("RoPE's table or W_E has the wrong shape for the C decode step")
        self.rope = rope
        self.lock = threading.Lock()  # one scratch space: one step at a time
        self._follow_rope()

    def _follow_rope(self) -> None:
        """Point step.c at RoPE's table as it is now: it grows with the positions used (model.RoPE.extend), and
        the scratch space (attention scores, n_heads × n_ctx) with it."""
        rope = self.rope
        if self.model.cos != rope.cos.data_ptr():
            self.model.cos, self.model.sin = rope.cos.data_ptr(), rope.sin.data_ptr()  # (the rope module keeps them)
            self.model.n_ctx = self.n_ctx = rope.cos.shape[0]
            self.scratch = torch.empty(self.lib.step_scratch_bytes(ctypes.byref(self.model)), dtype=torch.uint8)

    def _ptr(self, t: torch.Tensor) -> int:
        t = t.detach()
        if not t.is_contiguous():
            t = t.contiguous()
        self.keep.append(t)
        return t.data_ptr()

    def _matrix(self, W) -> Matrix:
        return Matrix(self._ptr(W.codes), self._ptr(W.dm), W.d_in, W.d_out, W.bits, W.terms)

    def takes(self, tokens: torch.Tensor, cache) -> bool:
        """Whether this call can run in C: one row, a float32, float16 or int8 cache in the expected layout."""
        cfg, K = self.cfg, cache.K
        shape = (cfg.n_layers, 1, cfg.n_kv_heads, cache.capacity, cfg.d_head)
        if not (tokens.shape[0] == 1 and K.dtype in CACHE_DTYPES and tuple(K.shape) == shape
                and all(t.is_contiguous() for t in (K, cache.V)) and cache.V.shape == K.shape and cache.V.dtype == K.dtype):
            return False
        scales = (cache.K_scale, cache.V_scale)
        if K.dtype != torch.int8:
            return scales == (None, None)
        return all(s is not None and s.dtype == torch.float32 and tuple(s.shape) == shape[:4] and s.is_contiguous()
                   for s in scales)

    def __call__(self, tokens: torch.Tensor, cache, pos: int) -> torch.Tensor:
        if not self.takes(tokens, cache):
            raise GlassError("the C decode step takes one row and a contiguous float32, float16 or int8 cache")
        logits = torch.empty(1, self.cfg.d_vocab)
        scale = [0 if s is None else s.data_ptr() for s in (cache.K_scale, cache.V_scale)]
        c = Cache(cache.K.data_ptr(), cache.V.data_ptr(), *scale, CACHE_DTYPES[cache.K.dtype], cache.capacity)
        with self.lock:
            self._follow_rope()
            if self.rows is not None:  # W_E[token] at row 0 (the struct's row stride is 0)
                self.E[0].copy_(self.rows.row(int(tokens[0, 0]) % self.cfg.d_vocab))
            rc = self.lib.decode_step(ctypes.byref(self.model), int(tokens[0, 0]), pos, ctypes.byref(c),
                                      logits.data_ptr(), self.scratch.data_ptr(), self.scratch.numel(), self.isa,
                                      self.threads or torch.get_num_threads())
        if rc:
            raise GlassError(f"step.c refused token {int(tokens[0, 0])} at position {pos} of a cache of "
                             f"{cache.capacity} (code {rc})")
        return logits
