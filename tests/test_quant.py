"""Packed weight matrices (glassgpt.quant): GGUF's own blocks read exactly, and x·W from each packing."""

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf import quants

from glassgpt import kernels
from glassgpt.quant import BlockWeight, FullWeight, HalfWeight, Int4Weight, Int8Weight, q4_1_codes, q8_0_codes


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


# ----------------------------------------------------------------------------- BlockWeight: GGUF's blocks, one kernel


def test_q4_1_and_q8_0_blocks_load_into_block_weights_with_no_new_rounding():
    rows = _matrix(d_in=128, d_out=64).T.contiguous().numpy()  # (d_out, d_in): GGUF's rows
    raw4, raw8 = quants.quantize(rows, Q.Q4_1), quants.quantize(rows, Q.Q8_0)
    w4 = BlockWeight(*q4_1_codes(raw4, 128), bits=4)
    w8 = BlockWeight.from_q8_0(*q8_0_codes(raw8, 128))
    assert torch.equal(w4.dequantize().T, torch.from_numpy(quants.dequantize(raw4, Q.Q4_1)))
    assert torch.equal(w8.dequantize().T, torch.from_numpy(quants.dequantize(raw8, Q.Q8_0)))
    c, d, m = w4.blocks()  # and the kernel's layout reads back to the same blocks
    assert torch.equal(BlockWeight(c, d, m, bits=4).codes, w4.codes) and int(c.max()) <= 15


def test_the_kernel_chosen_is_the_best_this_cpu_has():
    flags = kernels.cpu_flags()
    best = next((name for name, (_, needs) in kernels.ISAS.items() if all(f in flags for f in needs)), "torch")
    assert kernels.kernel() == best, kernels.why()  # (so the tests below test a kernel, not the reference twice)
    assert BlockWeight.quantize(_matrix(), 4).kernel == best


@pytest.mark.parametrize("isa", list(kernels.ISAS))
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("terms", [1, 2])
def test_each_kernel_version_equals_the_torch_reference(isa, bits, terms):
    if isa not in kernels.usable():
        pytest.skip(f"this CPU cannot run {isa}")  # (the test above checks the best one is used)
    w = BlockWeight.quantize(_matrix(d_in=192, d_out=96), bits, terms=terms)
    x = torch.randn(15, 192)
    x[:, 7] = 9.0  # an outlier, as residual streams have
    y = kernels.call(x, w.codes, w.dm, 96, bits, terms, isa=isa)
    ref = w.reference(x)
    assert y.dtype == torch.float32 and y.shape == (15, 96)
    assert (y - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert torch.equal(w(x.view(3, 5, 192)), kernels.call(x, w.codes, w.dm, 96, bits, terms).view(3, 5, 96))


@pytest.mark.parametrize("isa", list(kernels.ISAS))
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("terms", [1, 2])
def test_a_prompts_rows_together_give_each_rows_own_product_bitwise(isa, bits, terms):
    """blockdot.c multiplies a prompt's rows a few at a time (tile_rows_*) and the rest one by one: any n
    gives, row for row, exactly what that row alone gives."""
    if isa not in kernels.usable():
        pytest.skip(f"this CPU cannot run {isa}")
    w = BlockWeight.quantize(_matrix(d_in=192, d_out=96), bits, terms=terms)
    x = torch.randn(2 * 8 + 3, 192)  # up to twice the largest row block (8) and some left over
    x[:, 7] = 9.0
    alone = torch.cat([kernels.call(x[i:i + 1].contiguous(), w.codes, w.dm, 96, bits, terms, isa=isa) for i in range(len(x))])
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 11, 19):
        y = kernels.call(x[:n].contiguous(), w.codes, w.dm, 96, bits, terms, isa=isa)
        assert torch.equal(y, alone[:n]), n
    assert (alone - w.reference(x)).abs().max() <= 1e-5 * w.reference(x).abs().max()
    # (control: the comparison sees which row is which)
    assert not torch.equal(alone[:4], kernels.call(x[1:5].contiguous(), w.codes, w.dm, 96, bits, terms, isa=isa))


@pytest.mark.parametrize("isa", list(kernels.ISAS))
@pytest.mark.parametrize("bits", [4, 8])
def test_the_largest_codes_and_activations_do_not_overflow_the_integer_sums(isa, bits):
    """Codes at their extremes (4-bit 15; 8-bit 0, i.e. q = -128) times activations that all round to +127:
    the 16-bit partial sums of the AVX2 versions are at their largest and must still be exact."""
    if isa not in kernels.usable():
        pytest.skip(f"this CPU cannot run {isa}")
    d_in, d_out = 64, 32
    c = torch.full((d_out, d_in), 15 if bits == 4 else 0, dtype=torch.uint8)
    d = torch.full((d_out, d_in // 32), 0.01)
    w = BlockWeight(c, d, torch.zeros_like(d) if bits == 4 else -128 * d, bits=bits)
    x = torch.full((9, d_in), 0.5)
    x[1::2] *= -1  # and the most negative
    y = kernels.call(x, w.codes, w.dm, d_out, bits, 2, isa=isa)
    alone = torch.cat([kernels.call(x[i:i + 1].contiguous(), w.codes, w.dm, d_out, bits, 2, isa=isa) for i in range(9)])
    expected = x @ w.dequantize()  # x is exact in int8 steps: ±0.5 = ±127·(0.5/127)
    assert torch.equal(y, alone)
    assert (y - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("bits", [4, 8])
def test_two_activation_passes_stay_within_their_bound_and_one_pass_does_not(bits):
    """Each int8 pass leaves at most half a step (max|r|/127) of each block of 32 activations:
    two passes are within max|x|/64516 of x, one within max|x|/254."""
    W = _matrix(d_in=256, d_out=64)
    x = torch.randn(4, 256).double()
    x[:, 3] = 12.0
    errs = {}
    for terms, step in [(1, 254), (2, 64516)]:
        w = BlockWeight.quantize(W, bits, terms=terms)
        exact = x @ w.dequantize().double()
        bound = (x.view(4, -1, 32).abs().amax(-1) / step) @ w.dequantize().double().abs().view(-1, 32, 64).sum(1)
        errs[terms] = (w(x.float()).double() - exact).abs()
        assert (errs[terms] <= bound + 1e-5).all()
    assert errs[1].max() > 50 * errs[2].max()  # the second pass does work


@pytest.mark.parametrize("bits, levels", [(4, 15), (8, 254)])
def test_block_quantisation_error_is_at_most_half_a_step(bits, levels):
    W = _matrix(d_in=64, d_out=32)
    w = BlockWeight.quantize(W, bits)
    blocks = W.T.reshape(32, -1, 32)  # (d_out, blocks, 32)
    step = (blocks.amax(-1) - blocks.amin(-1) if bits == 4 else 2 * blocks.abs().amax(-1)) / levels
    err = (w.dequantize() - W).T.reshape(32, -1, 32).abs().amax(-1)
    assert (err <= step / 2 * (1 + 2 ** -9) + 1e-7).all()


def test_block_weights_need_whole_blocks_and_tiles():
    with pytest.raises(ValueError, match="divisible"):
        BlockWeight.quantize(torch.randn(96, 40), 4)
    with pytest.raises(ValueError, match="divisible"):
        BlockWeight.quantize(torch.randn(40, 64), 8)


@pytest.mark.slow
def test_a_block_weight_compiles_into_one_graph():
    """glassgpt.generate compiles the decode step around project(): the kernel must trace (a custom op)."""
    w = BlockWeight.quantize(_matrix(d_in=128, d_out=64), 4)
    x = torch.randn(1, 1, 128)
    compiled = torch.compile(lambda x: torch.nn.functional.silu(w(x)) * 2, fullgraph=True)
    assert torch.allclose(compiled(x), torch.nn.functional.silu(w(x)) * 2, atol=1e-6)


@pytest.mark.parametrize("env, reason", [({"CC": "/nonexistent/cc"}, "no C compiler"),
                                         ({"GLASSGPT_KERNEL": "torch"}, "GLASSGPT_KERNEL=torch")])
def test_without_the_kernel_the_torch_reference_runs_and_says_why(monkeypatch, env, reason):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(kernels, "_why", "not tried yet")  # choose again (monkeypatch puts the old choice back)
    monkeypatch.setattr(kernels, "_lib", None)
    assert kernels.kernel() == "torch" and reason in kernels.why()
    w = BlockWeight.quantize(_matrix(d_in=64, d_out=32), 4)
    x = torch.randn(2, 64)
    assert w.kernel == "torch" and torch.equal(w(x), w.reference(x))


def test_block_weights_moved_into_huge_pages_multiply_the_same_and_still_save(tmp_path):
    """kernels.huge_pages copies each block weight's codes and scales into memory madvised for 2 MB pages:
    the products are bitwise the same, each tensor has its own storage (a state dict still saves), and a
    weight that is not a BlockWeight stays where it was."""
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(BlockWeight.quantize(_matrix(d_in=192, d_out=96), 4),
                                BlockWeight.quantize(_matrix(d_in=96, d_out=64, seed=1), 8), FullWeight(_matrix(d_in=64, d_out=32)))
    x = torch.randn(3, 192)
    before = model(x)
    pointers = [t.data_ptr() for t in model.state_dict().values()]
    moved = kernels.huge_pages(model)
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not thp.is_file() or "[never]" in thp.read_text():
        assert moved == 0
        pytest.skip("no transparent huge pages on this system: nothing moved (checked)")
    state = model.state_dict()
    assert moved == sum(w.codes.nbytes + w.dm.nbytes for w in model[:2])
    after = [t.data_ptr() for t in state.values()]
    changed = {k for k, a, b in zip(state, pointers, after) if a != b}
    assert changed == {"0.codes", "0.dm", "1.codes", "1.dm"}  # (passes, the float weight: where they were)
    assert torch.equal(model(x), before)
    save_file(state, tmp_path / "w.safetensors")  # (refuses tensors that share memory)
    assert all(torch.equal(v, state[k]) for k, v in load_file(tmp_path / "w.safetensors").items())
