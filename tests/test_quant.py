"""Packed weight matrices (glassgpt.quant): GGUF's own blocks read exactly, and x·W from each packing."""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf import quants

from glassgpt.quant import FullWeight, HalfWeight, Int4Weight, Int8Weight, q4_1_codes, q8_0_codes


def _matrix(d_in=96, d_out=128, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_in, d_out, generator=g) * 0.05 + 0.01  # an offset: minima and zeros far from 0


def test_q4_1_blocks_give_the_gguf_packages_weights_exactly():
    rows = _matrix().T.contiguous().numpy()  # (d_out, d_in): GGUF's rows
    raw = quants.quantize(rows, Q.Q4_1)
    q, d, m = q4_1_codes(raw, rows.shape[1])
    assert q.shape == rows.shape and int(q.min()) >= 0 and int(q.max()) <= 15
    W = (q.float().view(q.shape[0], -1, 32) * d[..., None] + m[..., None]).view(q.shape)
    assert torch.equal(W, torch.from_numpy(quants.dequantize(raw, Q.Q4_1)))


def test_q8_0_blocks_give_the_gguf_packages_weights_exactly():
    rows = _matrix().T.contiguous().numpy()
    raw = quants.quantize(rows, Q.Q8_0)
    q, d = q8_0_codes(raw, rows.shape[1])
    W = (q.float().view(q.shape[0], -1, 32) * d[..., None]).view(q.shape)
    assert torch.equal(W, torch.from_numpy(quants.dequantize(raw, Q.Q8_0)))


def test_int4_packing_keeps_the_codes_and_the_kernel_multiplies_by_the_dequantised_matrix():
    rows = _matrix().T.contiguous().numpy()
    q, d, m = q4_1_codes(quants.quantize(rows, Q.Q4_1), rows.shape[1])
    w = Int4Weight(q, d, m)
    assert torch.equal(w.codes(), q)  # our reading of the kernel's layout is right ...
    eye = torch.eye(w.d_in)  # ... and so is dequantize(): the kernel itself (float32 path) applied to I
    by_kernel = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, w.packed, 32, w.scale_zero.float())
    assert torch.allclose(by_kernel, w.dequantize(), atol=1e-6)
    # against GGUF's weights the only difference is the bf16 rounding of scale and zero
    ref = torch.from_numpy(quants.dequantize(quants.quantize(rows, Q.Q4_1), Q.Q4_1)).T
    assert (w.dequantize() - ref).abs().max() < 2 ** -8 * ref.abs().max()
    assert (w.dequantize() - ref).abs().max() > 0  # (bf16 scales are not exact: the test would see it)


@pytest.mark.parametrize("make, tol", [
    (FullWeight, 1e-5),
    (lambda W: HalfWeight(W, torch.float16), 2e-3),
    (lambda W: HalfWeight(W, torch.bfloat16), 2e-2),
    (Int8Weight.quantize, 2e-2),
    (Int4Weight.quantize, 2e-2),
])
def test_each_packing_computes_x_times_its_own_matrix_in_float32(make, tol):
    W = _matrix()
    w = make(W)
    x = torch.randn(3, 5, W.shape[0])
    y = w(x)
    assert y.dtype == torch.float32 and y.shape == (3, 5, W.shape[1])
    ref = x @ w.dequantize()
    assert (y - ref).abs().max() <= tol * ref.abs().max()
    assert (w.dequantize() - W).abs().max() <= 0.1 * W.abs().max()  # and it is close to the matrix it packs


def test_int8_quantisation_error_is_at_most_half_a_step():
    W = _matrix()
    w = Int8Weight.quantize(W)
    step = w.s.float()[None, :]  # (1, d_out)
    assert ((w.dequantize() - W).abs() <= step / 2 + step * 2 ** -7).all()  # + the bf16 rounding of the scale


def test_int4_needs_whole_kernel_blocks():
    with pytest.raises(ValueError, match="divisible"):
        Int4Weight.quantize(torch.randn(96, 40))
