"""Weight matrices stored in fewer bits, for decoding (a speed trick kept behind a wall).

Decoding one token reads every weight once, so on a CPU its speed limit is memory bandwidth ÷
bytes of weights. Each class here holds one matrix W (d_in, d_out) of the model in a packed
form and computes x·W from it with one of torch's CPU kernels; activations enter and leave in
float32, so the rest of the model never sees the packing.

    Int4Weight   4-bit codes in groups of 32 along d_in, a scale and a minimum per group:
                 w = q·d + m, q ∈ 0..15 — exactly GGUF's Q4_1, so a Q4_1 file loads without
                 any new rounding. Kernel: aten._weight_int4pack_mm_for_cpu (bf16 activations:
                 its float32 path is not vectorised).
    Int8Weight   8-bit codes, one scale per output column: w = q·s.
                 Kernel: aten._weight_int8pack_mm (bf16 activations, same reason).
    HalfWeight   a float16 / bfloat16 copy, multiplied by the half-precision matrix-vector kernel
                 (a prompt's many rows widen it to float32 instead: half-precision matrix-matrix
                 products are slow on CPUs without native fp16 arithmetic).
    FullWeight   float32, stored (d_in, d_out) row-major — the layout whose matrix-vector product
                 torch runs fastest (benchmarks/matvec.py).

Every class can give its matrix back in float32 (`dequantize()`), for inspection and tests.
benchmarks/matvec.py times each against this machine's read bandwidth.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import kernels

GROUP = 32  # weights per scale in Int4Weight (GGUF's block size)


class PackedWeight(nn.Module):
    """x (..., d_in) float32 → x·W (..., d_out) float32; W stored however the subclass likes."""

    d_in: int
    d_out: int

    def dequantize(self) -> torch.Tensor:  # (d_in, d_out) float32
        raise NotImplementedError

    def restore(self) -> None:
        """Set the plain attributes (sizes, activation dtype) from the buffers (after loading them)."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.buffers())

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, {self.nbytes / 2**20:.2f} MiB" + (
            f", {self.bits}-bit, {self.terms} pass(es), kernel {self.kernel}" if hasattr(self, "kernel") else "")


class FullWeight(PackedWeight):
    def __init__(self, W: torch.Tensor):
        super().__init__()
        self.register_buffer("W", W.float().contiguous())  # (d_in, d_out)
        self.restore()

    def restore(self) -> None:
        self.d_in, self.d_out = self.W.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W

    def dequantize(self) -> torch.Tensor:
        return self.W


class HalfWeight(PackedWeight):
    """W in float16 or bfloat16, stored (d_out, d_in): x·W runs as the kernel's x·Wᵀ case."""

    def __init__(self, W: torch.Tensor, dtype: torch.dtype = torch.float16):
        super().__init__()
        self.register_buffer("W_T", W.T.to(dtype).contiguous())  # (d_out, d_in)
        self.restore()

    def restore(self) -> None:
        self.d_out, self.d_in = self.W_T.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= 8 * self.d_in:  # a few tokens (decoding): bandwidth-bound, multiply in half precision
            return torch.nn.functional.linear(x.to(self.W_T.dtype), self.W_T).float()
        return torch.nn.functional.linear(x, self.W_T.float())  # a prompt: compute-bound, widen W once

    def dequantize(self) -> torch.Tensor:
        return self.W_T.T.float()


class Int8Weight(PackedWeight):
    """w[i, j] = q[j, i]·s[j]: int8 codes (d_out, d_in), one scale per output column."""

    def __init__(self, q: torch.Tensor, s: torch.Tensor, act: torch.dtype = torch.bfloat16):
        super().__init__()
        self.register_buffer("q", q.to(torch.int8).contiguous())  # (d_out, d_in)
        self.register_buffer("s", s.to(act).contiguous())  # (d_out,)
        self.restore()

    def restore(self) -> None:
        self.d_out, self.d_in = self.q.shape
        self.act = self.s.dtype

    @classmethod
    def quantize(cls, W: torch.Tensor, **kw) -> "Int8Weight":
        """Symmetric per-column quantisation of W (d_in, d_out): s = max|w| / 127."""
        act = kw.get("act", torch.bfloat16)
        W = W.float().T  # (d_out, d_in)
        s = W.abs().amax(dim=1).clamp(min=1e-12) / 127
        s = _round_up(s, act)  # the scale the kernel will use, so codes round against it
        return cls(torch.round(W / s[:, None]).clamp(-127, 127), s, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, self.d_in).to(self.act), self.q, self.s)
        return y.float().view(*shape[:-1], self.d_out)

    def dequantize(self) -> torch.Tensor:
        return (self.q.float() * self.s.float()[:, None]).T


class Int4Weight(PackedWeight):
    """w = q·d + m per group of 32 inputs: codes q (d_out, d_in) in 0..15, d and m (d_out, d_in/32).

    torch's packed kernel wants the pair (scale, zero) with w = (q - 8)·scale + zero, so
    zero = m + 8·d; both are stored in the activations' dtype (bf16).
    """

    def __init__(self, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor, act: torch.dtype = torch.bfloat16):
        super().__init__()
        if q.shape[1] % GROUP or q.shape[0] % 64:
            raise ValueError(f"int4 packing needs d_in divisible by {GROUP} and d_out by 64, got {tuple(q.shape)}")
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 2)
        self.register_buffer("packed", packed)  # (d_out, d_in/2) uint8, in the kernel's own order
        scale_zero = torch.stack([d.float(), m.float() + 8 * d.float()], dim=-1)  # (d_out, d_in/32, 2)
        self.register_buffer("scale_zero", scale_zero.transpose(0, 1).to(act).contiguous())  # (d_in/32, d_out, 2)
        self.restore()

    def restore(self) -> None:
        self.d_out, self.d_in = self.packed.shape[0], self.packed.shape[1] * 2
        self.act = self.scale_zero.dtype

    @classmethod
    def quantize(cls, W: torch.Tensor, **kw) -> "Int4Weight":
        """Asymmetric quantisation of W (d_in, d_out) per group of 32 inputs, as GGUF's Q4_1 does it."""
        act = kw.get("act", torch.bfloat16)
        W = W.float().T  # (d_out, d_in)
        groups = W.reshape(W.shape[0], -1, GROUP)  # (d_out, d_in/32, 32)
        lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
        d = _round_up((hi - lo).clamp(min=1e-12) / 15, act)  # scale and zero as the kernel will hold them
        zero = ((lo + hi) / 2).to(act).float()  # w = (q - 8)·d + zero
        q = torch.round((groups - zero[..., None]) / d[..., None] + 8).clamp(0, 15)
        return cls(q.reshape(W.shape), d, zero - 8 * d, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(-1, self.d_in).to(self.act), self.packed,
                                                       GROUP, self.scale_zero)
        return y.float().view(*shape[:-1], self.d_out)

    def codes(self) -> torch.Tensor:
        """The 4-bit codes (d_out, d_in) back out of the kernel's packing (torch 2.13's CPU layout:
        blocks of 64 output rows; byte [block, k, j] holds row j's code in its low nibble and row
        j + 32's in its high nibble). Tested against the kernel itself."""
        p = self.packed.view(self.d_out // 64, self.d_in, 32)  # (blocks, d_in, 32)
        lo, hi = (p & 0x0F).transpose(1, 2), (p >> 4).transpose(1, 2)  # (blocks, 32, d_in) each
        return torch.cat([lo, hi], dim=1).reshape(self.d_out, self.d_in)

    def dequantize(self) -> torch.Tensor:
        scale, zero = self.scale_zero.float().transpose(0, 1).unbind(-1)  # (d_out, d_in/32) each
        q = self.codes().float().view(self.d_out, -1, GROUP)  # (d_out, d_in/32, 32)
        W = (q - 8) * scale[..., None] + zero[..., None]
        return W.reshape(self.d_out, self.d_in).T


class BlockWeight(PackedWeight):
    """GGUF-style blocks: w = d·c + m for each block of 32 inputs and each output, c an unsigned
    4- or 8-bit code, d and m float16. GGUF's Q4_1 is exactly this; its Q8_0 (w = d·q, q signed)
    is c = q + 128, m = -128·d. So a GGUF file's own blocks load with no new rounding.

    x·W runs in glassgpt/kernels/blockdot.c where the CPU has AVX-512 VNNI (else `reference`, the
    same maths in torch): each block of 32 activations becomes `terms` int8 passes, x ≈ Σ_t dx_t·xq_t
    (two passes: within |x|max/127² per block; one pass: llama.cpp's 8-bit activations), the
    integer dot products are exact, and the offset m multiplies the block's exact float sum (4-bit; for
    8-bit codes, whose m = -128·d is only a change of sign convention, the sum of the rounded x).
    Stored in the kernel's layout (tiles of 16 outputs, see blockdot.c): codes (d_out/16, d_in/32,
    bits·64) uint8 and dm (d_out/16, d_in/32, 2, 16) float16.
    """

    def __init__(self, c: torch.Tensor, d: torch.Tensor, m: torch.Tensor, bits: int, terms: int = 2):
        super().__init__()
        d_out, d_in = c.shape
        if d_in % GROUP or d_out % 16 or bits not in (4, 8) or terms not in (1, 2):
            raise ValueError(f"block packing needs d_in divisible by {GROUP} and d_out by 16, got {(d_in, d_out)}")
        R, G = d_out // 16, d_in // GROUP
        c = c.to(torch.uint8)
        if bits == 8:
            codes = c.view(R, 16, G, 8, 4).permute(0, 2, 3, 1, 4)  # (R, G, quad, row, 4)
        else:
            pair = c.view(R, 16, G, 4, 2, 4)  # (R, row, G, octet, half, 4): codes k..k+3 and k+4..k+7
            codes = (pair[..., 0, :] | (pair[..., 1, :] << 4)).permute(0, 2, 3, 1, 4)  # (R, G, octet, row, 4)
        dm = torch.stack([t.float().reshape(R, 16, G).transpose(1, 2) for t in (d, m)], dim=2)  # (R, G, 2, 16)
        self.register_buffer("codes", codes.reshape(R, G, bits * 64).contiguous())
        self.register_buffer("dm", dm.to(torch.float16).contiguous())
        self.register_buffer("passes", torch.tensor([terms], dtype=torch.uint8))  # (a buffer: kept in the cache)
        self.restore()

    def restore(self) -> None:
        R, G, tile = self.codes.shape
        self.d_out, self.d_in, self.bits, self.terms = R * 16, G * GROUP, tile // 64, int(self.passes[0])
        self.kernel = kernels.kernel()  # chosen once, at load time, from the CPU's flags: "avx512-vnni", "avx2", "torch"

    @classmethod
    def from_q8_0(cls, q: torch.Tensor, d: torch.Tensor, **kw) -> "BlockWeight":
        """GGUF Q8_0 (signed codes q (d_out, d_in), scales d (d_out, d_in/32)) → c = q + 128, m = -128·d."""
        return cls((q.to(torch.int16) + 128).to(torch.uint8), d, -128 * d.float(), bits=8, **kw)

    @classmethod
    def quantize(cls, W: torch.Tensor, bits: int, **kw) -> "BlockWeight":
        """W (d_in, d_out) float → blocks of 32 inputs: Q4_1's (minimum, 15 steps) or Q8_0's (symmetric, ±127).
        The scales are rounded to float16 first, so the codes round against the scales the kernel uses."""
        if W.shape[0] % GROUP:
            raise ValueError(f"block packing needs d_in divisible by {GROUP}, got {tuple(W.shape)}")
        rows = W.float().T.reshape(W.shape[1], -1, GROUP)  # (d_out, d_in/32, 32)
        if bits == 8:
            d = _half_up(rows.abs().amax(-1) / 127)
            q = torch.round(rows / d[..., None].clamp(min=1e-30)).clamp(-127, 127)
            return cls.from_q8_0(q.reshape(W.shape[1], -1), d, **kw)
        lo = rows.amin(-1).half().float()
        d = _half_up((rows.amax(-1) - lo) / 15)
        c = torch.round((rows - lo[..., None]) / d[..., None].clamp(min=1e-30)).clamp(0, 15)
        return cls(c.reshape(W.shape[1], -1), d, lo, bits=4, **kw)

    def blocks(self, rows: "torch.Tensor | int | None" = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Back out of the kernel's layout: codes c (n, d_in) uint8, d and m (n, d_in/32) float32, for the
        outputs `rows` (ids in 0..d_out-1, n of them; one int: n = 1, by plain indexing) or every output."""
        G = self.d_in // GROUP
        codes = self.codes.view(-1, G, self.bits, 16, 4)  # (tile, G, group, row in the tile, 4)
        if rows is None:  # every output, tile by tile
            p, dm = codes.permute(0, 3, 1, 2, 4), self.dm.permute(0, 3, 1, 2)  # (tile, row, G, group, 4), (…, G, 2)
        else:  # output i is row i % 16 of tile i // 16
            p, dm = codes[rows // 16, :, :, rows % 16], self.dm[rows // 16, :, :, rows % 16]  # (n, G, group, 4), (n, G, 2)
        # 8-bit: groups are quads of codes k..k+3; 4-bit: octets, byte i holding code k+i (low) and k+4+i (high)
        c = p if self.bits == 8 else torch.stack([p & 0x0F, p >> 4], dim=-2)
        dm = dm.float().reshape(-1, G, 2)
        return c.reshape(-1, self.d_in), dm[..., 0], dm[..., 1]

    def dequantize(self) -> torch.Tensor:
        c, d, m = self.blocks()
        W = c.float().view(self.d_out, -1, GROUP) * d[..., None] + m[..., None]
        return W.reshape(self.d_out, self.d_in).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.d_in).float()
        if self.kernel == "torch":
            y = self.reference(x)
        elif torch.compiler.is_compiling():
            y = torch.ops.glassgpt.blockdot(x, self.codes, self.dm, self.d_out, self.bits, self.terms)
        else:  # eager: straight to the kernel (the custom op's dispatch costs more than the call)
            y = kernels.call(x.contiguous(), self.codes, self.dm, self.d_out, self.bits, self.terms, self.kernel)
        return y.view(*shape[:-1], self.d_out)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel's maths in torch (the glass box it is tested against): x (n, d_in) → (n, d_out)."""
        blocks = x.float().view(x.shape[0], -1, GROUP)  # (n, G, 32)
        x_hat = quantized_activations(blocks, self.terms)  # what the integer dot products see
        c, d, m = self.blocks()
        dc = (c.float().view(self.d_out, -1, GROUP) * d[..., None]).view(self.d_out, self.d_in)  # w - m
        s = (blocks if self.bits == 4 else x_hat).sum(-1)  # (n, G): 8-bit's m = -128·d must meet x̂, not x
        return x_hat.view(x.shape) @ dc.T + s @ m.T


class BlockRows(nn.Module):
    """A tied W_E (d_vocab, d_model) read from the unembedding's blocks: row i of W_E is output i of
    W_U = W_Eᵀ. `W_E[tokens]` dequantises only the rows asked for (w = d·c + m per block of 32; for GGUF's
    Q8_0 that is d·q, exact in float32), so a block mode holds no float32 copy of W_E. It owns no tensor
    (the blocks are unembed.W_U's: counted, stored and cached there), so it is not a PackedWeight."""

    dtype = torch.float32

    def __init__(self, W_U: BlockWeight):
        super().__init__()
        object.__setattr__(self, "source", W_U)  # a reference, not a submodule: no second copy in the state dict

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.source.d_out, self.source.d_in))  # (d_vocab, d_model)

    @property
    def device(self) -> torch.device:
        return self.source.codes.device

    def __getitem__(self, index) -> torch.Tensor:
        """W_E[index] as a float32 tensor, for an int, a slice or a tensor of token ids (..., d_model)."""
        V = self.source.d_out
        if isinstance(index, slice):
            ids = torch.arange(V)[index]
        else:
            ids = torch.as_tensor(index, device=self.device)
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise IndexError(f"W_E rows are read by integer token ids, got {ids.dtype}")
        if ids.numel() == 1:  # a decode step's one token: views of its tile, no gathers
            i = int(ids)
            if not -V <= i < V:
                raise IndexError(f"token id {i} out of range for a vocabulary of {V}")
            return self.row(i % V).view(*ids.shape, self.source.d_in)
        flat = ids.reshape(-1).long()
        if flat.numel() and (int(flat.min()) < -V or int(flat.max()) >= V):
            raise IndexError(f"token id out of range for a vocabulary of {V}")
        return self.rows(torch.where(flat < 0, flat + V, flat)).view(*ids.shape, self.source.d_in)

    def row(self, i: int) -> torch.Tensor:
        """Row i (d_model,): rows() for one id, by plain indexing into its tile, no gathers (a decode step
        does this once a token)."""
        c, d, m = self.source.blocks(i)  # (1, d_model), (1, G) twice
        return (c.float().view(-1, GROUP) * d.view(-1, 1) + m.view(-1, 1)).view(self.source.d_in)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (N,) in 0..d_vocab-1 → their rows (N, d_model), the same arithmetic as BlockWeight.dequantize."""
        c, d, m = self.source.blocks(ids)  # (N, d_model), (N, G) twice
        x = c.float().view(len(ids), -1, GROUP) * d[..., None] + m[..., None]  # (N, G, 32)
        return x.reshape(len(ids), self.source.d_in)

    def dequantize(self) -> torch.Tensor:  # (d_vocab, d_model) float32: every row, for tests and inspection
        return self.rows(torch.arange(self.source.d_out, device=self.device))

    def extra_repr(self) -> str:
        return f"rows of the unembedding's {self.source.bits}-bit blocks, {tuple(self.shape)}"


def quantized_activations(blocks: torch.Tensor, terms: int) -> torch.Tensor:
    """blocks (..., 32) → Σ_t dx_t·xq_t: each pass rounds what the previous ones left to int8 steps of
    max|r|/127 (blockdot.c's quantize_row)."""
    rest, total = blocks.clone(), torch.zeros_like(blocks)
    for _ in range(terms):
        amax = rest.abs().amax(-1, keepdim=True)
        d = amax / 127
        q = torch.round(rest * torch.where(amax > 0, 127 / amax, torch.zeros_like(amax))).clamp(-127, 127)
        total += d * q
        rest -= d * q
    return total


def _half_up(x: torch.Tensor) -> torch.Tensor:
    """x rounded to float16, never below x (so the largest code stays in range), as float32."""
    y = x.half().float()
    return torch.where(y < x, (x * (1 + 2 ** -10)).half().float(), y)


def _round_up(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x rounded to dtype, never below x (a scale rounded down would push the largest code out of range)."""
    y = x.to(dtype).float()
    return torch.where(y < x, (x * (1 + 2 ** -7)).to(dtype).float(), y)


# ----------------------------------------------------------------------------- GGUF's own blocks


def q4_1_codes(raw: np.ndarray, d_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GGUF Q4_1 blocks → codes (rows, d_in) in 0..15, scales d and minima m (rows, d_in/32), w = q·d + m.

    A block is 20 bytes: d (fp16), m (fp16), then 16 bytes whose low nibbles are weights 0..15
    and high nibbles weights 16..31.
    """
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, d_in // GROUP, 20)  # (rows, groups, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0]
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0]
    nibbles = blocks[..., 4:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)  # (rows, groups, 32)
    return (torch.from_numpy(q.reshape(q.shape[0], d_in)), torch.from_numpy(d.astype(np.float32)),
            torch.from_numpy(m.astype(np.float32)))


def q8_0_codes(raw: np.ndarray, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GGUF Q8_0 blocks → codes (rows, d_in) int8 and scales d (rows, d_in/32), w = q·d.

    A block is 34 bytes: d (fp16), then 32 signed bytes.
    """
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, d_in // GROUP, 34)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0]
    q = blocks[..., 2:].copy().view(np.int8)  # (rows, groups, 32)
    return torch.from_numpy(q.reshape(q.shape[0], d_in)), torch.from_numpy(d.astype(np.float32))
