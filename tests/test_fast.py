"""Weight modes (glassgpt.fast): the same model stored lighter, with float32 logits, loaded once and cached."""

import pytest
import torch

from glassgpt import GPT, preset
from glassgpt.errors import GlassError
from glassgpt.fast import MODES, bare_model, decode_bytes, pack_model, weights_bytes
from glassgpt.load import load_packed_gguf
from glassgpt.generate import SampleConfig, generate_ids
from glassgpt.load import load_model
from glassgpt.quant import BlockWeight, HalfWeight

from gguf_synth import tiny_model, write_gguf


def _model() -> GPT:
    cfg = preset("smollm2-135m", d_vocab=211, n_ctx=64, d_model=128, n_layers=3, n_heads=4, n_kv_heads=2, d_mlp=256)
    return GPT(cfg).eval()


@pytest.mark.parametrize("mode, kind", [("fp16", HalfWeight), ("bf16", HalfWeight), ("int8", BlockWeight),
                                        ("int4", BlockWeight), ("q4a8", BlockWeight)])
def test_pack_model_stores_the_layer_matrices_and_keeps_activations_float32(mode, kind):
    model = _model()
    tokens = torch.randint(0, 211, (2, 20))
    ref = model(tokens)
    before = weights_bytes(model)
    pack_model(model, mode)
    assert isinstance(model.blocks[0].mlp.W_up, kind) and isinstance(model.blocks[2].attn.W_Q, kind)
    assert weights_bytes(model) < before
    _, cache = model.run_with_cache(tokens, names=["blocks.1.resid_post"])
    assert cache["blocks.1.resid_post"].dtype == torch.float32
    out = model(tokens)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


@pytest.mark.parametrize("mode", ["fp16", "int4"])
def test_logits_are_float32_products_whatever_the_mode(mode):
    """The tie bug: fp16 logits round 34.823 and 34.819 onto one value. Every mode's unembedding
    multiplies in float32, so the logits are the float32 product of the final residual and W_Eᵀ."""
    model = _model()
    with torch.no_grad():
        model.embed.W_E.mul_(60)  # logits of about ±35, where fp16's step is 1/32
    tokens = torch.randint(0, 211, (1, 12))
    pack_model(model, mode)
    logits, cache = model.run_with_cache(tokens, names=["final_norm"])
    exact = cache["final_norm"].double() @ model.embed.W_E.double().T  # (1, T, d_vocab)
    assert logits.abs().max() > 16
    assert (logits.double() - exact).abs().max() < 1e-3  # fp16 rounding alone would be up to 1/64


@pytest.mark.parametrize("mode, passes", [("int4", 2), ("int8", 2), ("q4a8", 1)])
def test_the_block_modes_store_the_unembedding_in_8_bit_blocks_and_return_float32_logits(mode, passes):
    cfg = preset("smollm2-135m", d_vocab=224, n_ctx=64, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=256)
    model = GPT(cfg).eval()
    with torch.no_grad():
        model.embed.W_E.mul_(60)  # logits of about ±35, as in the test above
    tokens = torch.randint(0, 224, (1, 12))
    pack_model(model, mode)
    W_U = model.unembed.W_U
    assert isinstance(W_U, BlockWeight) and W_U.bits == 8 and W_U.terms == passes
    assert weights_bytes(model) - decode_bytes(model) == 4 * model.embed.W_E.numel()  # logits don't read W_E
    logits, cache = model.run_with_cache(tokens, names=["final_norm"])
    exact = cache["final_norm"].double() @ W_U.dequantize().double()  # the blocks' own matrix, in float64
    assert logits.dtype == torch.float32 and logits.abs().max() > 16
    # each pass leaves at most half a step of max|r|/127: within max|x|/254 (one pass), /64516 (two) a block
    x = cache["final_norm"].double().view(12, -1, 32)  # (T, blocks, 32)
    bound = (x.abs().amax(-1) / (254 if passes == 1 else 64516)) @ W_U.dequantize().double().abs().view(-1, 32, 224).sum(1)
    err = (logits[0].double() - exact[0]).abs()  # (T, d_vocab)
    assert (err <= bound + 1e-4).all() and err.max() > 1e-5
    assert (W_U.dequantize() - model.embed.W_E.T).abs().max() <= model.embed.W_E.abs().max() / 254 * 1.01


def test_fp16_decodes_like_fp32_with_the_cache():
    model = _model()
    prompt = [[5, 9, 13, 2, 7, 7, 1]]
    cfg = SampleConfig(max_new_tokens=12, temperature=0)
    ref = [int(t[0]) for t in generate_ids(model, prompt, cfg)]
    pack_model(model, "fp16")
    assert [int(t[0]) for t in generate_ids(model, prompt, cfg)] == ref


def test_unknown_weight_format_is_refused():
    with pytest.raises(GlassError, match="fp32, fp16"):
        load_model(None, weights="int3")


def test_bare_model_allocates_without_initialising():
    model = bare_model(_model().cfg)
    assert type(model) is GPT and model.blocks[0].attn.W_Q.shape == (128, 128)


@pytest.fixture
def q4_gguf(tmp_path):
    model = tiny_model(seed=2)
    return write_gguf(tmp_path / "tiny.gguf", model, {"blk": "Q4_1", "token_embd": "Q8_0"}), model


def test_int4_from_a_q4_1_gguf_keeps_its_codes_and_the_cache_gives_the_same_model(q4_gguf, tmp_path, monkeypatch):
    path, _ = q4_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    fp32 = load_packed_gguf(path, "fp32", cache=False)
    first = load_packed_gguf(path, "int4")
    W_Q = first.model.blocks[0].attn.W_Q
    assert isinstance(W_Q, BlockWeight)
    exact = fp32.model.blocks[0].attn.W_Q  # the GGUF's Q4_1 weights, dequantised by the gguf package
    assert torch.equal(W_Q.dequantize(), exact)  # its own codes and float16 scales: no new rounding
    assert len(list((tmp_path / "cache" / "converted").glob("*-int4-*.safetensors"))) == 1

    import glassgpt.convert.gguf as G

    monkeypatch.setattr(G, "read_gguf", lambda p: pytest.fail("a cache hit must not read the GGUF"))
    second = load_packed_gguf(path, "int4")
    tokens = torch.tensor([[3, 50, 60, 70, 4, 9]])
    assert torch.equal(first.model(tokens), second.model(tokens))
    assert second.tokenizer.encode("the cat") == first.tokenizer.encode("the cat")
    assert second.chat_template == first.chat_template and second.stop_ids == first.stop_ids
    assert (second.model(tokens) - fp32.model(tokens)).abs().max() < 0.05 * fp32.model(tokens).abs().max()


def test_the_cache_is_keyed_by_content(q4_gguf, tmp_path, monkeypatch):
    path, model = q4_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    a = load_packed_gguf(path, "fp32")
    with torch.no_grad():
        model.blocks[0].mlp.W_up.mul_(-1)
    write_gguf(path, model, {"blk": "Q4_1", "token_embd": "Q8_0"})  # same name, new content
    b = load_packed_gguf(path, "fp32")
    assert not torch.equal(a.model.blocks[0].mlp.W_up, b.model.blocks[0].mlp.W_up)
    assert len(list((tmp_path / "cache" / "converted").glob("*.safetensors"))) == 2


def test_the_command_line_offers_every_mode_and_the_default():
    from glassgpt.commands.generate import DEFAULT_WEIGHTS, WEIGHT_MODES
    from glassgpt.fast import DEFAULT_MODE

    assert WEIGHT_MODES == MODES and DEFAULT_WEIGHTS == DEFAULT_MODE


@pytest.mark.parametrize("mode", ["fp16", "bf16", "int8", "int4", "q4a8"])
def test_every_mode_comes_back_from_the_cache_unchanged(q4_gguf, tmp_path, monkeypatch, mode):
    """(int8 codes mapped from the file at an unaligned address once crashed torch's kernel on a prompt)"""
    path, _ = q4_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    first, second = load_packed_gguf(path, mode), load_packed_gguf(path, mode)
    tokens = torch.randint(3, 200, (1, 40))
    assert torch.equal(first.model(tokens), second.model(tokens))
