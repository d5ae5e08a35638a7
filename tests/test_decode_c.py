"""The decode step in C (glassgpt/kernels/step.c) against the glass box: the same logits, the same tokens.

Small random Llama-style toys (RoPE, RMSNorm, SwiGLU, grouped-query attention) in each block weight mode,
through each kernel version this CPU has, at positions that cross the C code's blocks of keys (8 and 16).
"""

import ctypes

import pytest
import torch

from glassgpt import GPT, kernels, preset
from glassgpt.decode import DecodeStep, StaticKVCache, cache_dtype, quantize_rows
from glassgpt.errors import GlassError
from glassgpt.fast import pack_model
from glassgpt.generate import SampleConfig, decode_step, generate_ids, new_cache, truncate
from glassgpt.kernels.step import CACHE_DTYPES, CStep, threads_asked, why_not
from toys import lean_and_glass

pytestmark = pytest.mark.skipif(not kernels.usable(), reason="no C kernel on this machine (GLASSGPT_KERNEL=torch, "
                                                              "no compiler or no AVX2): the torch step runs")
V = 128  # a multiple of 16: the unembedding is stored as blocks too
SHAPES = {"d_head 32": dict(d_model=128, n_heads=4, n_kv_heads=2),  # the general loops
          "d_head 64": dict(d_model=192, n_heads=3, n_kv_heads=1)}  # SmolLM2's d_head: the unrolled loops


def _toy(mode: str, shape: str = "d_head 64", sharp: bool = False, n_ctx: int = 96) -> GPT:
    """Random weights with norms that matter and attention far from uniform (W_Q, W_K scaled up: which key
    sits where, i.e. RoPE, changes the logits). sharp: more so, and layers that outweigh the token's own
    embedding, so greedy continuations vary (float32 rounding differences grow with the scale: 7e-4 of the
    logits between C and torch in int4, against 4e-5 for the mild toy)."""
    cfg = preset("smollm2-135m", d_vocab=V, n_ctx=n_ctx, n_layers=2, d_mlp=192, rope_theta=500.0, **SHAPES[shape])
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(("W_Q", "W_K")):
                p.mul_(12 if sharp else 4)
            elif name.endswith(("W_V", "W_O", "W_gate", "W_up", "W_down")) and sharp:
                p.mul_(6)
    return pack_model(model, mode)


def _steps(model, step, prompt, n_steps, kv_dtype=torch.float32):
    """Logits of n_steps one-token steps after `prompt` through `step` (C or torch) and the glass box."""
    ours, theirs, _ = lean_and_glass(model, step, prompt, n_steps, kv_dtype)
    return ours, theirs


def _c_step(model, isa: str) -> DecodeStep:
    step = DecodeStep(model)
    assert step.c is not None, step.why_not_c
    step.c = CStep(model, isa=isa)
    return step


@pytest.mark.parametrize("isa", kernels.usable())
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode, tolerance", [("int4", 2e-4), ("int8", 2e-4), ("q4a8", 2e-2)])
def test_the_c_step_computes_the_glass_box_logits(mode, tolerance, shape, isa):
    """Within a fraction of the largest logit. C and torch round float32 differently (a norm's sum in another
    order, exp), and the activations' int8 rounding can turn a last-bit difference into a step: int4 and int8
    correct it with their second pass (measured here: 4e-5 and 1.4e-5), q4a8's one pass cannot, so a
    difference becomes a step of max|x|/127 wherever a value sits on a rounding boundary (measured 5e-3)."""
    model = _toy(mode, shape)
    step = _c_step(model, isa)
    ours, theirs = _steps(model, step, [3, 1, 4, 1, 5, 9, 2, 6, 5], 60)  # positions 9..68: blocks of 8 and 16, tails
    assert step.ran == "c"
    assert ours.std() > 0.1  # the logits are not all alike: a wrong position or head would show
    assert (ours - theirs).abs().max() < tolerance * theirs.abs().max()
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.parametrize("isa", kernels.usable())
def test_the_c_step_starts_from_an_empty_cache(isa):
    model = _toy("int4", "d_head 32")
    ours, theirs = _steps(model, _c_step(model, isa), [], 20)  # position 0 first: attention over one key
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


def _attention(q, K, V, pos, isa, K_scale=None, V_scale=None, threads=1):
    """step.c's attention alone (step_attention): q (H, d_head), K, V (H_kv, capacity, d_head) float32, float16
    or int8 codes with K_scale, V_scale (H_kv, capacity) → z (H, d_head), its pieces shared among `threads`."""
    lib = kernels.library()
    (H, d), (H_kv, capacity, _) = q.shape, K.shape
    lib.attention_part_floats.restype = ctypes.c_size_t
    part = torch.empty(lib.attention_part_floats(H, d, capacity))
    scores, z = torch.empty(H, capacity), torch.empty(H, d)
    lib.step_attention.restype = ctypes.c_int
    pointers = [ctypes.c_void_p(None if t is None else t.data_ptr()) for t in (q, K, V, K_scale, V_scale)]
    rc = lib.step_attention(*map(ctypes.c_int, (H, H_kv, d)), *pointers,
                            *map(ctypes.c_int, (CACHE_DTYPES[K.dtype], capacity, pos, kernels.ISAS[isa][0])),
                            *(ctypes.c_void_p(t.data_ptr()) for t in (scores, part, z)), ctypes.c_int(threads))
    assert rc == 0
    return z


LONG = 1100  # positions: past attention.c's SPAN (1024), so a head's attention is cut into 2 spans at the end
AT = (0, 15, 16, 300, 1023, 1024, 1040, LONG - 1)  # inside and at the ends of blocks of 16 and of one span


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("H, H_kv, d_head", [(9, 3, 64), (4, 2, 32), (4, 1, 64), (3, 1, 48), (2, 1, 128), (3, 1, 24)])
def test_both_attention_versions_compute_softmax_qk_v_over_a_long_cache(H, H_kv, d_head, dtype):
    """AVX-512 (blocks of 16 keys, three query heads a pass, SmolLM2's 9/3 × 64 unrolled) and AVX2 against
    torch in float64 over a thousand random keys, at lengths that end inside and at the end of a block and of a
    span; on two threads (pieces of key/value head × span shared, kernels/pool.c) the same bits as on one."""
    torch.manual_seed(0)
    q = 2 * torch.randn(H, d_head)
    K, V = torch.randn(H_kv, LONG, d_head).to(dtype), torch.randn(H_kv, LONG, d_head).to(dtype)
    for pos in AT:
        k, v = (t[:, :pos + 1].double().repeat_interleave(H // H_kv, 0) for t in (K, V))  # (H, pos + 1, d_head)
        pattern = torch.softmax(q.double().unsqueeze(1) @ k.transpose(1, 2) / d_head ** 0.5, -1)  # (H, 1, pos + 1)
        want = (pattern @ v).squeeze(1)  # (H, d_head)
        got = {isa: _attention(q, K, V, pos, isa) for isa in kernels.usable()}
        for isa, z in got.items():
            assert (z - want).abs().max() < 1e-5 * want.abs().max()
            assert torch.equal(_attention(q, K, V, pos, isa, threads=2), z)
        if len(got) == 2:
            assert (got["avx512-vnni"] - got["avx2"]).abs().max() < 1e-5 * got["avx2"].abs().max()


def test_the_comparison_sees_a_missing_rotation():
    """The control: the C step reads the model's own RoPE table; with the rotation taken out of it
    (cos = 1, sin = 0) its logits part from the glass box's far beyond the tolerance above."""
    model = _toy("int4")
    step = DecodeStep(model)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5]
    with torch.inference_mode():
        cache = StaticKVCache(model.cfg, 40)
        model(torch.tensor([prompt]), cache=cache)
        want = model(torch.tensor([prompt + [7]]))[:, -1]
        rope = model.blocks[0].attn.rope
        cos, sin = rope.cos.clone(), rope.sin.clone()
        rope.cos.fill_(1.0), rope.sin.zero_()  # in place: the pointers step.c holds see it
        try:
            got = step(torch.tensor([[7]]), cache)
        finally:
            rope.cos.copy_(cos), rope.sin.copy_(sin)
        assert step.ran == "c"
        assert (got - want).abs().max() > 100 * 2e-4 * want.abs().max()  # (measured: 0.12 of the largest logit)
        for layer in cache.layers:
            layer.length = len(prompt)
        assert (step(torch.tensor([[7]]), cache) - want).abs().max() < 1e-4 * want.abs().max()  # restored: equal


@pytest.mark.parametrize("isa", kernels.usable())
def test_a_float16_cache_in_c_stays_near_the_exact_logits(isa):
    model = _toy("int4", "d_head 64")
    ours, theirs = _steps(model, _c_step(model, isa), [3, 1, 4, 1, 5, 9, 2, 6, 5], 30, kv_dtype=torch.float16)
    drift = (ours - theirs).abs().max()
    assert 0 < drift < 0.05 * theirs.abs().max()  # (0 would mean the half-precision cache was not read)


def test_the_c_step_writes_keys_rounded_to_float16_as_torch_rounds_them():
    model = _toy("int4")
    prompt = [3, 1, 4, 1, 5]
    with torch.inference_mode():
        full, half = StaticKVCache(model.cfg, 8), StaticKVCache(model.cfg, 8, dtype=torch.float16)
        for cache in (full, half):
            model(torch.tensor([prompt]), cache=cache)
            DecodeStep(model)(torch.tensor([[7]]), cache)
        # layer 0's new key and value come from the token alone (no attention before them): the same numbers
        assert torch.equal(half.K[0, :, :, 5], full.K[0, :, :, 5].half())
        assert torch.equal(half.V[0, :, :, 5], full.V[0, :, :, 5].half())


def test_generation_makes_a_float16_cache_for_the_c_step_and_float32_elsewhere():
    model = _toy("int4")
    assert cache_dtype(model) == torch.float16 and new_cache(model, 8).K.dtype == torch.float16
    assert cache_dtype(_toy("fp32")) == torch.float32
    model.kv_dtype = torch.float32  # a model may ask for the exact cache
    assert new_cache(model, 8).K.dtype == torch.float32


def test_generation_through_the_c_step_equals_full_recomputation():
    """Through the default float16 cache (the toy's greedy choices are not close calls)."""
    model = _toy("int4", sharp=True)
    prompt = [3, 1, 4, 1, 5]
    got = [int(t[0]) for t in generate_ids(model, [prompt], SampleConfig(max_new_tokens=30, temperature=0))]
    assert decode_step(model).ran == "c"
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(30):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert got == seq[len(prompt):]
    assert len(set(got)) > 3  # a varied continuation, not one token repeated


@pytest.mark.parametrize("kind, reason", [("gpt2", "not a Llama-style model"), ("fp32", "not stored as blocks"),
                                          ("fp16", "not stored as blocks")])
def test_other_models_keep_the_torch_step(kind, reason):
    if kind == "gpt2":
        cfg = preset("baby", d_vocab=V, n_ctx=40, d_model=64, n_layers=2, n_heads=4)
        torch.manual_seed(0)
        model = pack_model(GPT(cfg).eval(), "int4")
    else:
        model = _toy(kind)
    assert reason in why_not(model)
    step = DecodeStep(model)
    with torch.inference_mode():
        cache = StaticKVCache(model.cfg, 8)
        model(torch.tensor([[1, 2, 3]]), cache=cache)
        want = model(torch.tensor([[1, 2, 3, 4]]))[:, -1]
        assert (step(torch.tensor([[4]]), cache) - want).abs().max() < 1e-4
    assert step.c is None and step.ran == "torch"


def test_a_batch_or_a_bfloat16_cache_takes_the_torch_step():
    model = _toy("int4")
    step = DecodeStep(model)
    with torch.inference_mode():
        for batch, dtype in ((2, torch.float32), (1, torch.bfloat16)):
            cache = StaticKVCache(model.cfg, 8, batch=batch, dtype=dtype)
            model(torch.tensor([[1, 2, 3]] * batch), cache=cache)
            step(torch.tensor([[4]] * batch), cache)
            assert step.ran == "torch"


def test_sizes_step_c_refuses_are_one_line_errors():
    model = _toy("int4")
    c = CStep(model)
    cache = StaticKVCache(model.cfg, 4)
    with pytest.raises(GlassError, match="refused token 4 at position 4 of a cache of 4"):
        c(torch.tensor([[4]]), cache, 4)
    with pytest.raises(GlassError, match="one row"):
        c(torch.tensor([[4], [4]]), cache, 0)
    cache.V = cache.V[:, :, :, :2]
    with pytest.raises(GlassError, match="one row"):
        c(torch.tensor([[4]]), cache, 0)
    with pytest.raises(GlassError, match="refused token 500"):
        c(torch.tensor([[500]]), StaticKVCache(model.cfg, 4), 0)
    eight = StaticKVCache(model.cfg, 4, dtype=torch.int8)
    eight.V_scale = None  # an int8 cache without its scales
    with pytest.raises(GlassError, match="int8 cache"):
        c(torch.tensor([[4]]), eight, 0)


def test_a_failed_build_leaves_nothing_in_the_cache_folder(monkeypatch, tmp_path):
    cc = tmp_path / "cc"  # a compiler that writes its output, then fails
    cc.write_text('#!/bin/sh\nwhile [ "$1" != "-o" ]; do shift; done\necho half > "$2"\nexit 1\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(kernels, "_why", "not tried yet")  # build again (monkeypatch puts the old library back)
    monkeypatch.setattr(kernels, "_lib", None)
    assert kernels.kernel() == "torch" and "building step.c failed" in kernels.why()
    assert list((tmp_path / "cache" / "kernels").iterdir()) == []


@torch.inference_mode()
def _c_logits(model, threads: int, n_steps: int = 40) -> torch.Tensor:
    step, cache = CStep(model, threads=threads), StaticKVCache(model.cfg, n_steps)
    out, token = [], torch.tensor([[7]])
    for pos in range(n_steps):
        out.append(step(token, cache, pos))
        token = out[-1].argmax(-1, keepdim=True)
    return torch.cat(out)


def test_threads_share_the_products_and_change_no_bit():
    """Each tile of 16 outputs is computed the same way whichever thread takes it (kernels/pool.c); 40 steps
    are some 200 sections handed out, each to be finished before the next (a lost one would hang here)."""
    model = _toy("int4", "d_head 32")  # d_mlp 192: 12 tiles, 3 pieces of 4; W_K 64 outputs: 1 piece
    one = _c_logits(model, 1)
    for threads in (2, 3):
        assert torch.equal(_c_logits(model, threads), one)


def test_threads_share_attention_over_spans_and_greedy_generation_keeps_every_token():
    """Past 1024 positions a layer's attention is cut into spans too (key/value head × span: 2 × 2 pieces at
    1100): 1100 greedy steps of a toy give the same logits, bit for bit, on one, two and three threads."""
    model = _toy("int4", "d_head 32", sharp=True, n_ctx=1100)
    model.blocks[0].attn.rope.extend(1100)  # (its table starts at 1024 positions; DecodeStep extends it)
    one = _c_logits(model, 1, 1100)
    assert len(set(one[1024:].argmax(-1).tolist())) > 3  # the continuation moves: a wrong piece would change it
    for threads in (2, 3):
        assert torch.equal(_c_logits(model, threads, 1100), one)


def test_a_forked_child_starts_its_own_workers():
    import os
    import time

    model = _toy("int4", "d_head 32")
    want = _c_logits(model, 2, 5)  # the parent's workers are running now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its parent's workers did not come along
        try:
            os.write(write, b"1" if torch.equal(_c_logits(model, 2, 5), want) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.time() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the C step")
        time.sleep(0.05)
    assert os.read(read, 1) == b"1"


@pytest.mark.parametrize("value, want", [(None, 1), ("3", 3), ("torch", 0)])
def test_decode_threads_come_from_the_environment(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv("GLASSGPT_DECODE_THREADS", raising=False)
    else:
        monkeypatch.setenv("GLASSGPT_DECODE_THREADS", value)
    assert threads_asked() == want


def test_a_bad_thread_count_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("GLASSGPT_DECODE_THREADS", "lots")
    with pytest.raises(GlassError, match="GLASSGPT_DECODE_THREADS must be a number from 1 to 16 or 'torch', got 'lots'"):
        threads_asked()


def _int8_cache(H_kv: int, capacity: int, d_head: int):
    """Random keys and values (H_kv, capacity, d_head) with a few outlier channels, as int8 codes and scales."""
    K, V = torch.randn(H_kv, capacity, d_head), torch.randn(H_kv, capacity, d_head)
    K[..., :2] *= 8  # channels far larger than the rest, as real keys have: they set each row's scale
    return K, V, quantize_rows(K), quantize_rows(V)


def _softmax_qk_v(q, K, V, pos, H):
    """float64 attention of q (H, d_head) over positions 0..pos of K, V (H_kv, ·, d_head) → (H, d_head)."""
    d_head, H_kv = q.shape[1], K.shape[0]
    k, v = (t[:, :pos + 1].double().repeat_interleave(H // H_kv, 0) for t in (K, V))  # (H, pos + 1, d_head)
    pattern = torch.softmax(q.double().unsqueeze(1) @ k.transpose(1, 2) / d_head ** 0.5, -1)  # (H, 1, pos + 1)
    return (pattern @ v).squeeze(1)


@pytest.mark.parametrize("H, H_kv, d_head", [(9, 3, 64), (4, 2, 32), (3, 1, 48), (2, 1, 128), (3, 1, 24)])
def test_both_attention_versions_read_an_int8_cache_as_codes_times_scales(H, H_kv, d_head):
    """Against float64 torch on the same rounded keys and values (codes·scale): as close as the float32 caches
    above. Against the keys and values before rounding: within the bound the rounding allows, derived from the
    scales — each element moves by at most scale/2, so each score by at most δ = max‖q‖₁·scale_K/2/√d_head, each
    weight of the pattern by a factor within e^±2δ, and z by at most max(scale_V)/2 + (e^2δ - 1)·max|v|."""
    torch.manual_seed(0)
    q = torch.randn(H, d_head)
    K, V, (K8, K_scale), (V8, V_scale) = _int8_cache(H_kv, LONG, d_head)
    rounded = [codes.float() * scale.unsqueeze(-1) for codes, scale in ((K8, K_scale), (V8, V_scale))]
    for pos in AT:
        want = _softmax_qk_v(q, *rounded, pos, H)
        exact = _softmax_qk_v(q, K, V, pos, H)
        delta = q.abs().sum(1).max() * K_scale[:, :pos + 1].max() / 2 / d_head ** 0.5
        bound = V_scale[:, :pos + 1].max() / 2 + (torch.exp(2 * delta) - 1) * rounded[1][:, :pos + 1].abs().max()
        for isa in kernels.usable():
            z = _attention(q, K8, V8, pos, isa, K_scale, V_scale)
            assert (z - want).abs().max() < 1e-5 * want.abs().max()
            assert 0 < (z - exact).abs().max() < bound  # (0: the rounding was not read)
            assert torch.equal(_attention(q, K8, V8, pos, isa, K_scale, V_scale, threads=2), z)


def test_the_int8_comparison_sees_scales_one_step_off():
    """The control for the test above: had step.c divided by 128 instead of 127 (every scale 127/128 of the
    right one), its output would part from the reference far beyond the tolerance there."""
    torch.manual_seed(0)
    H, H_kv, d_head, pos = 9, 3, 64, 300
    q = torch.randn(H, d_head)
    K, V, (K8, K_scale), (V8, V_scale) = _int8_cache(H_kv, 400, d_head)
    off = [codes.float() * (scale * 127 / 128).unsqueeze(-1) for codes, scale in ((K8, K_scale), (V8, V_scale))]
    wrong = _softmax_qk_v(q, *off, pos, H)
    for isa in kernels.usable():
        z = _attention(q, K8, V8, pos, isa, K_scale, V_scale)
        assert (z - wrong).abs().max() > 100 * 1e-5 * wrong.abs().max()


def test_the_c_step_writes_int8_rows_as_quantize_rows_does():
    """Layer 0's keys and values come from the tokens alone (no attention before them): at every position the
    C step wrote, its codes and scales are quantize_rows of the float32 cache's, bit for bit."""
    model = _toy("int4")
    prompt = [3, 1, 4, 1, 5]
    _, _, full = lean_and_glass(model, DecodeStep(model), prompt, 30)
    _, _, eight = lean_and_glass(model, DecodeStep(model), prompt, 30, torch.int8)
    for held, codes, scales in ((full.K, eight.K, eight.K_scale), (full.V, eight.V, eight.V_scale)):
        want_codes, want_scales = quantize_rows(held[0])  # the prompt's (GPT.forward) and the steps' rows
        assert torch.equal(codes[0], want_codes) and torch.equal(scales[0], want_scales)
        assert codes[0].abs().max() == 127 and len(codes[0].unique()) > 100


@pytest.mark.parametrize("isa", kernels.usable())
def test_an_int8_cache_in_c_reads_what_the_torch_step_reads(isa):
    """The C step and the torch step on int8 caches (each writing its own rows: the same up to float32's last
    bits, so a code may differ by one here and there) against the glass box on float32."""
    model = _toy("int4", "d_head 64")
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5]
    ours, theirs, _ = lean_and_glass(model, _c_step(model, isa), prompt, 30, torch.int8)
    torch_step, _, _ = lean_and_glass(model, DecodeStep(model, c=False), prompt, 30, torch.int8)
    drift = (ours - theirs).abs().max()
    assert 0 < drift < 0.05 * theirs.abs().max()  # (measured: 0.0026 of it)
    assert (ours - torch_step).abs().max() < 0.1 * drift  # (measured: 0.06 of the drift)


def test_generation_through_the_c_step_on_an_int8_cache_equals_the_glass_box_on_int8():
    """Greedy tokens through the C step with an int8 cache against GPT.forward recomputing the whole sequence
    each token into a fresh int8 cache (the glass box on the same rounding: quantize_rows of each layer's keys
    and values). Against the float32 glass box the int8 rounding decides some of this toy's tokens: a control."""
    model = _toy("int4", sharp=True)
    model.kv_dtype = torch.int8
    prompt = [3, 1, 4, 1, 5]
    got = [int(t[0]) for t in generate_ids(model, [prompt], SampleConfig(max_new_tokens=30, temperature=0))]
    assert decode_step(model).ran == "c" and new_cache(model, 8).K.dtype == torch.int8
    seq, exact = list(prompt), list(prompt)
    with torch.inference_mode():
        for _ in range(30):
            cache = StaticKVCache(model.cfg, len(seq), dtype=torch.int8)
            seq.append(int(model(torch.tensor([seq]), cache=cache)[0, -1].argmax()))
            exact.append(int(model(torch.tensor([exact]))[0, -1].argmax()))
    assert got == seq[len(prompt):]
    assert len(set(got)) > 3
    assert exact != seq  # (the float32 glass box parts at token 4)


def test_a_conversation_keeps_its_int8_cache_across_turns_as_chat_does():
    """chat.Chat's pattern on an int8 cache through the C step: a turn cuts the cache back to the prefix it
    shares with the new prompt (generate.truncate), prefills the rest (GPT.forward, quantize_rows) and steps;
    the cache starts small, so a later turn grows it (reserve: codes and scales copied). Each turn's greedy
    answer equals that of a fresh int8 cache fed the whole prompt at once."""
    model = _toy("int4", sharp=True)
    model.kv_dtype = torch.int8
    cfg = SampleConfig(max_new_tokens=6, temperature=0)
    kept, history = new_cache(model, 8), [3, 1, 4]
    for turn in ([1, 5, 9], [2, 6], [5, 3, 5, 8]):
        prompt = history + turn
        truncate(kept, len(history))  # what the previous turn left after its answer is still held
        answer = [int(t[0]) for t in generate_ids(model, [prompt], cfg, cache=kept)]
        fresh = [int(t[0]) for t in generate_ids(model, [prompt], cfg, cache=new_cache(model, len(prompt) + 6))]
        assert answer == fresh and decode_step(model).ran == "c"
        assert kept.K.dtype == torch.int8 and kept.capacity >= len(prompt) + 5
        history = prompt + answer
    assert kept.capacity > 8  # it grew
