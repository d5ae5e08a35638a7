"""Weight modes (glassgpt.fast): the same model stored lighter, with float32 logits, loaded once and cached."""

import pytest
import torch

from glassgpt import GPT, kernels, preset
from glassgpt.decode import DecodeStep, StaticKVCache
from glassgpt.errors import GlassError
from glassgpt.fast import MODES, _swap, bare_model, decode_bytes, pack_model, weights_bytes
from glassgpt.load import load_packed_gguf
from glassgpt.generate import SampleConfig, generate_ids
from glassgpt.load import load_model
from glassgpt.model import RoPE
from glassgpt.quant import BlockRows, BlockWeight, HalfWeight

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


def test_a_cached_load_takes_the_rope_table_from_the_cache_and_computes_none(q4_gguf, tmp_path, monkeypatch):
    """The converted-weights cache stores RoPE's cos and sin (a load then runs none of the table's arithmetic,
    whose code stayed resident for the whole chat: README, Memory): the stored rows must be exactly the rows
    a fresh table has, the model's logits those of the load that wrote them, and the table must still grow
    beyond them. A stored table of the wrong shape makes the file unreadable: converted again."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    import glassgpt.fast as fast

    path, _ = q4_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    first = load_packed_gguf(path, "int4")  # converts, and writes the cache
    computed = []
    extend = RoPE.extend
    monkeypatch.setattr(RoPE, "extend", lambda self, n: (computed.append(n) if n > len(self.cos) else None,
                                                         extend(self, n))[1])
    second = load_packed_gguf(path, "int4")
    assert computed == []  # no table computed by the cached load
    rope, cfg = second.model.blocks[0].attn.rope, second.model.cfg
    assert all(block.attn.rope is rope for block in second.model.blocks)  # still one table for every layer
    fresh = RoPE(cfg.d_head, cfg.n_ctx, cfg.rope_theta)
    assert len(rope.cos) == len(fresh.cos) > 0 and torch.equal(rope.cos, fresh.cos) and torch.equal(rope.sin, fresh.sin)
    tokens = torch.tensor([[3, 50, 60, 70, 4, 9]])
    assert torch.equal(first.model(tokens), second.model(tokens))
    rope.cos, rope.sin = rope.cos[:2].clone(), rope.sin[:2].clone()  # the control: as if it had stored 2 rows
    assert torch.equal(first.model(tokens), second.model(tokens)) and computed  # grown on demand, the same

    stored = fast.cache_path(path, "int4")
    with safe_open(str(stored), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(stored))
    tensors["rope.cos"] = tensors["rope.cos"][:, :2].contiguous()  # (n, 2): not (n, d_head)
    save_file(tensors, str(stored), metadata=metadata)
    computed.clear()
    again = load_packed_gguf(path, "int4")
    assert computed and torch.equal(again.model(tokens), first.model(tokens))  # converted again, table computed


# ----------------------------------------------------------------------------- W_E from the unembedding's blocks


@pytest.fixture
def q8_gguf(tmp_path):
    """As q4_gguf, with a vocabulary of 272 rows (a multiple of 16: the unembedding goes to 8-bit blocks)."""
    model = tiny_model(seed=2, d_vocab=272)
    return write_gguf(tmp_path / "tiny.gguf", model, {"blk": "Q4_1", "token_embd": "Q8_0"}), model


@pytest.mark.parametrize("mode", ["int4", "int8", "q4a8"])
def test_the_block_modes_read_w_e_rows_from_the_q8_0_blocks_exactly(q8_gguf, tmp_path, monkeypatch, mode):
    path, _ = q8_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    fp32 = load_packed_gguf(path, "fp32", cache=False).model
    packed = load_packed_gguf(path, mode).model
    W_E = packed.embed.W_E
    assert isinstance(W_E, BlockRows) and W_E.source is packed.unembed.W_U and W_E.shape == fp32.embed.W_E.shape
    assert torch.equal(W_E.dequantize(), fp32.embed.W_E)  # Q8_0's d·q is exact in float32: the same rows
    tokens = torch.tensor([[0, 5, 17], [fp32.cfg.d_vocab - 1, 5, 63]])
    assert torch.equal(W_E[tokens], fp32.embed.W_E[tokens]) and torch.equal(W_E[7], fp32.embed.W_E[7])
    assert torch.equal(W_E[-1], fp32.embed.W_E[-1]) and torch.equal(W_E[3:9], fp32.embed.W_E[3:9])
    with pytest.raises(IndexError):
        W_E[torch.tensor([fp32.cfg.d_vocab])]
    assert not any("W_E" in name for name in packed.state_dict())  # no float32 copy held, none cached
    assert decode_bytes(packed) == weights_bytes(packed)  # the logits read the blocks, the lookup one row


def test_int4_generates_as_it_did_with_a_float32_w_e(q8_gguf, tmp_path, monkeypatch):
    path, _ = q8_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    model = load_packed_gguf(path, "int4").model
    before = load_packed_gguf(path, "int4", cache=False).model
    _swap(before.embed, "W_E", torch.nn.Parameter(before.embed.W_E.dequantize(), requires_grad=False))  # the old way
    assert weights_bytes(before) - weights_bytes(model) == 4 * model.embed.W_E.dequantize().numel()
    prompt = [[3, 50, 60, 70, 4, 9]]
    cfg = SampleConfig(max_new_tokens=16, temperature=0)
    assert torch.equal(model(torch.tensor(prompt)), before(torch.tensor(prompt)))
    greedy = [[int(t[0]) for t in generate_ids(m, prompt, cfg)] for m in (model, before)]
    assert greedy[0] == greedy[1]


@torch.inference_mode()
def test_the_decode_step_reads_the_rows_from_the_blocks_as_it_read_the_float32_w_e(q8_gguf, tmp_path, monkeypatch):
    """DecodeStep (the C step where the kernels build, else torch's) on W_E's blocks: the same logits, bit for bit."""
    from glassgpt.decode import DecodeStep, StaticKVCache

    path, _ = q8_gguf
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    model = load_packed_gguf(path, "int4").model
    before = load_packed_gguf(path, "int4", cache=False).model
    _swap(before.embed, "W_E", torch.nn.Parameter(before.embed.W_E.dequantize(), requires_grad=False))
    steps = [DecodeStep(m) for m in (model, before)]
    assert steps[0].why_not_c == steps[1].why_not_c  # rows from blocks do not keep a model off the C step
    caches = [StaticKVCache(m.cfg, 16) for m in (model, before)]
    for token in [3, 50, 271, 0, 9, 60]:
        a, b = (step(torch.tensor([[token]]), cache) for step, cache in zip(steps, caches))
        assert torch.equal(a, b) and a.std() > 0


def test_a_cache_of_an_older_layout_or_unreadable_is_converted_again(q8_gguf, tmp_path, monkeypatch):
    import shutil

    import glassgpt.convert.gguf as G
    import glassgpt.fast as fast

    path, _ = q8_gguf
    folder = tmp_path / "cache" / "converted"
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fast, "CACHE_VERSION", 3)
    load_packed_gguf(path, "int4")
    (old,) = folder.glob("*-int4-v3-*.safetensors")
    monkeypatch.setattr(fast, "CACHE_VERSION", 4)
    current = fast.cache_path(path, "int4")
    shutil.copy(old, current)  # an old file under the new name: its header says layout 3
    tokens = torch.tensor([[3, 50, 60, 70, 4, 9]])
    rebuilt = load_packed_gguf(path, "int4")
    assert isinstance(rebuilt.model.embed.W_E, BlockRows)
    assert sorted(folder.glob("*.safetensors")) == [current]  # converted again; the old layout's file removed
    current.write_bytes(b"not a safetensors file")
    again = load_packed_gguf(path, "int4")
    assert torch.equal(again.model(tokens), rebuilt.model(tokens))
    monkeypatch.setattr(G, "read_gguf", lambda p: pytest.fail("a valid cache must not read the GGUF"))
    cached = load_packed_gguf(path, "int4")  # the file written by the conversion is valid
    assert torch.equal(cached.model(tokens), rebuilt.model(tokens))


@pytest.mark.slow
def test_smollm2_w_e_rows_from_its_q8_0_blocks_equal_the_dequantised_token_embd():
    import glassgpt.convert.gguf as G
    from glassgpt.fast import _own_blocks

    path = G.default_gguf_path()
    t = next(t for t in G.read_gguf(path).tensors if t.name == "token_embd.weight")
    exact = G.dequantize(t, path)  # (d_vocab, d_model) float32, by the gguf package
    rows = BlockRows(_own_blocks(t, "int4", tuple(exact.shape), "", {}, path, unembedding=True))
    assert t.tensor_type.name == "Q8_0" and torch.equal(rows.dequantize(), exact)
    ids = torch.tensor([[0, 1, 2, 9906, 49151]])
    assert torch.equal(rows[ids], exact[ids])


@pytest.mark.skipif(not kernels.usable(), reason="no C kernel on this machine: the torch step runs")
def test_the_c_step_follows_the_rope_table_as_it_grows():
    """RoPE's table grows with the positions used (model.RoPE); the C step reads it through pointers, so it
    must follow the new table (and size its scratch to it): a model whose table starts at 4 positions decodes
    exactly as one whose table covers the window from the start. (Without following, step.c refuses
    position 4: beyond the n_ctx it was given.)"""
    torch.manual_seed(0)
    cfg = preset("smollm2-135m", d_vocab=128, n_ctx=64, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_mlp=256)
    whole = pack_model(GPT(cfg).eval(), "int4")  # every matrix in blocks: the C step serves it
    small = RoPE(whole.cfg.d_head, whole.cfg.n_ctx, whole.cfg.rope_theta)
    small.cos, small.sin = small.cos[:4].clone(), small.sin[:4].clone()
    prompt, got = [5, 9, 2], {}
    for name in ("whole", "small"):
        if name == "small":
            whole.__dict__.pop("_decode_step", None)
            for block in whole.blocks:
                block.attn.rope = small
        step = DecodeStep(whole)
        cache = StaticKVCache(whole.cfg, 40, dtype=torch.float16)
        with torch.inference_mode():
            whole(torch.tensor([prompt]), cache=cache)
            got[name] = torch.cat([step(torch.tensor([[t]]), cache) for t in range(3, 40)])
        assert step.ran == "c"
    assert len(small.cos) >= 40 and torch.equal(got["small"], got["whole"])
