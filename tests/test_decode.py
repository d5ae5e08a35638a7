"""The lean decode step (glassgpt.decode) against the glass box: the same logits, the same tokens, no allocation."""

import pytest
import torch
import torch.nn.functional as F

from glassgpt import GPT, preset
from glassgpt.decode import DecodeStep, StaticKVCache, attend_one
from glassgpt.errors import ContextLengthError
from glassgpt.fast import pack_model
from glassgpt.generate import SampleConfig, generate_ids, new_cache
from toys import lean_and_glass

V = 101


def _model(kind: str, mode: str = "fp32") -> GPT:
    if kind == "gpt2":  # learned positions, LayerNorm, biases, GELU
        cfg = preset("baby", d_vocab=V, n_ctx=40, d_model=64, n_layers=2, n_heads=4)
    else:  # RoPE, RMSNorm, grouped-query attention, SwiGLU
        cfg = preset("smollm2-135m", d_vocab=V, n_ctx=40, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2,
                     d_mlp=192, rope_theta=500.0)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every parameter matters
        for name, p in model.named_parameters():
            if name.endswith(".w") or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return pack_model(model, mode)


def _both(model, prompt, n_steps, kv_dtype=torch.float32, step=None):
    """Logits of n_steps one-token steps after `prompt`, through the glass box and through the lean step."""
    return lean_and_glass(model, step or DecodeStep(model), prompt, n_steps, kv_dtype)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("mode", ["fp32", "int4"])
def test_the_lean_step_computes_the_glass_box_logits(kind, mode):
    model = _model(kind, mode)
    ours, theirs, static = _both(model, [3, 1, 4, 1, 5, 9, 2, 6], 12)
    assert ours.std() > 0.1  # the logits are not all alike: a wrong position or head would show
    assert (ours - theirs).abs().max() < 1e-4
    assert static.length == 8 + 12


def test_the_static_cache_is_written_in_place_and_refuses_to_overflow():
    model = _model("llama")
    step, cache = DecodeStep(model), StaticKVCache(model.cfg, 6)
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3]]), cache=cache)
        where = (cache.K.data_ptr(), cache.V.data_ptr())
        for _ in range(3):
            step(torch.tensor([[4]]), cache)
        assert (cache.K.data_ptr(), cache.V.data_ptr()) == where  # no reallocation, no growing
        with pytest.raises(ContextLengthError, match="capacity of 6"):
            step(torch.tensor([[4]]), cache)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_reserve_keeps_what_the_cache_holds(dtype):
    model = _model("llama")
    with torch.inference_mode():
        cache = StaticKVCache(model.cfg, 5, dtype=dtype)
        model(torch.tensor([[1, 2, 3, 4]]), cache=cache)
        before = cache.layers[1].k.clone(), cache.layers[1].v.clone()  # (int8: codes and scales, as float32)
        cache.reserve(12)
        assert cache.capacity == 12 and all(torch.equal(a, b) for a, b in zip(before, (cache.layers[1].k, cache.layers[1].v)))
        assert DecodeStep(model)(torch.tensor([[4]]), cache).shape == (1, V)


def test_one_query_against_half_precision_keys_is_attention_on_the_rounded_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 1, 16), torch.randn(2, 2, 30, 16), torch.randn(2, 2, 30, 16)
    for dtype in (torch.bfloat16, torch.float16):
        kr, vr = k.to(dtype), v.to(dtype)
        want = F.scaled_dot_product_attention(q.to(dtype).float(), kr.float(), vr.float(), enable_gqa=True)
        got = attend_one(q, kr, vr)
        # the pattern is rounded once to the values' dtype before its product: its error, not the rounding of k
        assert (got - want).abs().max() < 2e-2
        assert (got - F.scaled_dot_product_attention(q, k, v, enable_gqa=True)).abs().max() > 1e-4  # control


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int8])
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_half_precision_or_int8_cache_stays_near_the_exact_logits(kind, dtype):
    model = _model(kind)
    ours, theirs, static = _both(model, [3, 1, 4, 1, 5, 9, 2, 6], 8, kv_dtype=dtype)
    drift = (ours - theirs).abs().max()
    assert 0 < drift < 0.05 * theirs.abs().max()
    assert static.K.dtype == dtype and static.nbytes < StaticKVCache(model.cfg, static.capacity).nbytes / 1.8


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_generation_through_the_lean_step_equals_full_recomputation(kind):
    model = _model(kind)
    prompt = [3, 1, 4, 1, 5]
    got = [int(t[0]) for t in generate_ids(model, [prompt], SampleConfig(max_new_tokens=20, temperature=0))]
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(20):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert got == seq[len(prompt):]
    assert isinstance(new_cache(model, 10), StaticKVCache)


def test_an_unpadded_batch_through_the_lean_step_generates_what_each_prompt_generates_alone():
    model = _model("llama")
    prompts, cfg = [[3, 1, 4, 1], [2, 7, 1, 8]], SampleConfig(max_new_tokens=10, temperature=0)
    batch = torch.stack(list(generate_ids(model, prompts, cfg)), dim=1)
    for row, p in enumerate(prompts):
        assert batch[row].tolist() == [int(t[0]) for t in generate_ids(model, [p], cfg)]
    assert batch[0].tolist() != batch[1].tolist()  # two different continuations: rows were not mixed up


def test_without_the_c_library_a_block_model_decodes_through_the_torch_step(monkeypatch):
    from glassgpt import kernels

    monkeypatch.setenv("GLASSGPT_KERNEL", "torch")
    monkeypatch.setattr(kernels, "_why", "not tried yet")  # choose again (monkeypatch puts the old choice back)
    monkeypatch.setattr(kernels, "_lib", None)
    torch.manual_seed(0)
    cfg = preset("smollm2-135m", d_vocab=128, n_ctx=40, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=192)
    model = pack_model(GPT(cfg).eval(), "int4")  # every matrix in blocks: the C step's kind of model
    step = DecodeStep(model)
    assert step.c is None and "not built" in step.why_not_c
    with torch.inference_mode():
        cache = StaticKVCache(model.cfg, 8)
        model(torch.tensor([[1, 2, 3]]), cache=cache)
        got = step(torch.tensor([[4]]), cache)
        want = model(torch.tensor([[1, 2, 3, 4]]))[:, -1]
    assert step.ran == "torch" and (got - want).abs().max() < 1e-4
