"""Invariants of the seed's transformer: fused == explicit, causality, T10, hooks, caches, every kind of attention."""

import math

import pytest
import torch

from glassgpt import GPT, Attention, Block, ModelConfig, preset, softmax_with_temperature
from glassgpt.errors import ContextLengthError
from glassgpt.kv_cache import LayerKV
from glassgpt.inspect.weights import W_OV, head_weights
from glassgpt.model import RoPE, attention_mask

V = 101


def gpt2_like(**kw) -> ModelConfig:
    return preset("baby", d_vocab=V, n_ctx=32, d_model=64, n_layers=2, n_heads=4, **kw)


def llama_like(**kw) -> ModelConfig:
    base = dict(d_vocab=V, n_ctx=32, d_model=96, n_layers=2, n_heads=6, n_kv_heads=2, d_mlp=160, rope_theta=500.0)
    return preset("smollm2-135m", **{**base, **kw})


CONFIGS = {"gpt2": gpt2_like, "llama-gqa": llama_like}


def _model(kind: str, **kw) -> GPT:
    model = GPT(CONFIGS[kind](**kw)).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every parameter matters
        for name, p in model.named_parameters():
            if name.endswith(".w") or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _set_explicit(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, Attention):
            m.explicit = on


@pytest.mark.parametrize("kind", CONFIGS)
def test_fused_and_explicit_paths_agree(kind):
    model = _model(kind)
    tokens = torch.randint(0, V, (3, 20))
    fused = model(tokens)
    _set_explicit(model, True)
    explicit = model(tokens)
    assert (fused - explicit).abs().max() < 1e-5


@pytest.mark.parametrize("kind", CONFIGS)
def test_fused_and_explicit_agree_with_a_cache_and_padding(kind):
    model = _model(kind)
    tokens = torch.randint(0, V, (2, 12))
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[1, :4] = False  # row 1 is left-padded
    positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)
    outs = []
    for explicit in (False, True):
        _set_explicit(model, explicit)
        cache = model.new_cache()
        a = model(tokens[:, :8], cache=cache, positions=positions[:, :8], key_mask=key_mask[:, :8])
        b = model(tokens[:, 8:], cache=cache, positions=positions[:, 8:], key_mask=key_mask)
        outs.append(torch.cat([a, b], dim=1))
    assert (outs[0] - outs[1]).abs().max() < 1e-5


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("explicit", [False, True])
def test_a_future_token_never_changes_an_earlier_output(kind, explicit):
    """T6: the causal mask keeps later tokens out of earlier positions."""
    model = _model(kind)
    _set_explicit(model, explicit)
    tokens = torch.randint(0, V, (1, 16))
    for t in (3, 9, 15):
        changed = tokens.clone()
        changed[0, t:] = (changed[0, t:] + 1 + torch.randint(0, V - 1, (16 - t,))) % V
        a, b = model(tokens), model(changed)
        assert torch.equal(a[0, :t], b[0, :t])
        assert not torch.allclose(a[0, t], b[0, t])  # the changed position itself does change


@pytest.mark.parametrize("kind", CONFIGS)
def test_pattern_is_a_masked_softmax_of_the_scaled_scores(kind):
    """T3/T8: scores = QKᵀ/√d_k (T×T per head, before the mask), pattern = softmax with -inf above the diagonal."""
    model = _model(kind)
    tokens = torch.randint(0, V, (2, 10))
    _, cache = model.run_with_cache(tokens, names=["blocks.1.attn.*"])
    q, k = cache["blocks.1.attn.q"], cache["blocks.1.attn.k"]
    scores, pattern = cache["blocks.1.attn.scores"], cache["blocks.1.attn.pattern"]
    cfg = model.cfg
    assert scores.shape == pattern.shape == (2, cfg.n_heads, 10, 10)
    k_rep = k.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1)
    assert torch.allclose(scores, q @ k_rep.transpose(-1, -2) / math.sqrt(cfg.d_head), atol=1e-5)
    assert torch.isfinite(scores).all()  # the mask comes after the scores
    above = ~attention_mask(10, 10, True)[0, 0]
    assert (pattern[..., above] == 0).all()
    assert torch.allclose(pattern.sum(-1), torch.ones(2, cfg.n_heads, 10))
    masked = scores.masked_fill(above, float("-inf"))
    assert torch.allclose(pattern, masked.softmax(-1), atol=1e-6)


def test_value_map_down_weighted_sum_up_equals_one_combined_matrix():
    """T10: per head, (pattern · (x·W_V)) · W_O == pattern · (x · (W_V·W_O)) — same maths, different cost."""
    model = _model("gpt2")
    attn = model.blocks[0].attn
    tokens = torch.randint(0, V, (1, 12))
    _, cache = model.run_with_cache(tokens, names=["blocks.0.attn.pattern", "blocks.0.attn.out", "blocks.0.resid_pre"])
    x = model.blocks[0].ln1(cache["blocks.0.resid_pre"])[0]  # (T, d_model)
    pattern = cache["blocks.0.attn.pattern"][0]  # (H, T, T)
    d_model = model.cfg.d_model
    down_sum_up = torch.zeros(12, d_model)
    combined = torch.zeros(12, d_model)
    w, W_OV_ = head_weights(model, 0), W_OV(model, 0)
    for h in range(model.cfg.n_heads):
        v = x @ w["W_V"][h] + w["b_V"][h]  # (T, d_head): down
        down_sum_up += (pattern[h] @ v) @ w["W_O"][h]  # weighted sum, then up
        combined += pattern[h] @ (x @ W_OV_[h] + w["b_V"][h] @ w["W_O"][h])  # one d_model × d_model map
    out = cache["blocks.0.attn.out"][0] - attn.b_O
    assert torch.allclose(down_sum_up, out, atol=1e-5)
    assert torch.allclose(combined, out, atol=1e-5)
    assert W_OV_.shape == (model.cfg.n_heads, d_model, d_model)
    assert torch.linalg.matrix_rank(W_OV_[0]) <= attn.d_head  # a low-rank map: the bottleneck of T10


def test_grouped_query_equals_multi_head_with_shared_keys_and_values():
    """n_kv_heads < n_heads: each key/value head serves a group of query heads."""
    gqa = _model("llama-gqa")
    mha = GPT(gqa.cfg.replace(n_kv_heads=gqa.cfg.n_heads)).eval()
    rep = gqa.cfg.n_heads // gqa.cfg.n_kv_heads
    sd = {}
    for name, t in gqa.state_dict().items():
        if name.endswith(("attn.W_K", "attn.W_V")):
            d, _ = t.shape
            t = t.view(d, gqa.cfg.n_kv_heads, 1, gqa.cfg.d_head).expand(-1, -1, rep, -1).reshape(d, -1)
        sd[name] = t
    mha.load_state_dict(sd)
    tokens = torch.randint(0, V, (2, 14))
    assert (gqa(tokens) - mha(tokens)).abs().max() < 1e-5


def test_cross_attention_reads_another_sequence_without_a_causal_mask():
    cfg = gpt2_like()
    attn = Attention(cfg, causal=False, cross=True)
    torch.nn.init.normal_(attn.W_Q, std=0.3)
    torch.nn.init.normal_(attn.W_K, std=0.3)
    for W in (attn.W_V, attn.W_O):
        torch.nn.init.normal_(W, std=0.1)
    target, source = torch.randn(2, 5, cfg.d_model), torch.randn(2, 9, cfg.d_model)
    for explicit in (False, True):
        attn.explicit = explicit
        out = attn(target, context=source)
        assert out.shape == (2, 5, cfg.d_model)
        changed = source.clone()
        changed[:, -1] += 1.0  # the last source token is visible to the first target token
        assert not torch.allclose(attn(target, context=changed)[:, 0], out[:, 0])
    hooks = {}
    attn.hook_pattern.fns.append(lambda x, name: hooks.setdefault("pattern", x))
    attn(target, context=source)
    assert hooks["pattern"].shape == (2, cfg.n_heads, 5, 9) and (hooks["pattern"] > 0).all()
    # with a source padding mask, padded keys get no weight
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    hooks.clear()
    attn(target, context=source, mask=mask)
    assert (hooks["pattern"][1, ..., 6:] == 0).all()


def test_decoder_block_with_cross_attention_caches_source_keys_once():
    cfg = gpt2_like()
    block = Block(cfg, causal=True, cross=True).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, source = torch.randn(1, 6, cfg.d_model), torch.randn(1, 8, cfg.d_model)
    full = block(x, context=source)
    self_kv, cross_kv = LayerKV(), LayerKV()
    steps = [block(x[:, t:t + 1], mask=attention_mask(1, t + 1, True), cache=self_kv, context=source, cross_cache=cross_kv)
             for t in range(6)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert cross_kv.length == 8  # computed on the first step, reused after


@pytest.mark.parametrize("kind", CONFIGS)
def test_kv_cache_gives_the_same_logits_at_every_step(kind):
    model = _model(kind)
    tokens = torch.randint(0, V, (2, 18))
    full = model(tokens)
    cache = model.new_cache()
    steps = [model(tokens[:, :7], cache=cache)]
    steps += [model(tokens[:, t:t + 1], cache=cache) for t in range(7, 18)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-5


def test_run_with_cache_reads_every_named_activation_without_changing_the_logits():
    model = _model("llama-gqa")
    tokens = torch.randint(0, V, (2, 9))
    plain = model(tokens)
    logits, cache = model.run_with_cache(tokens)
    assert torch.equal(logits, plain) or (logits - plain).abs().max() < 1e-5
    L, cfg = model.cfg.n_layers, model.cfg
    expected = ["embed", "final_norm", "logits"] + [
        f"blocks.{i}.{n}" for i in range(L) for n in
        ["resid_pre", "resid_mid", "resid_post", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern",
         "attn.z", "attn.out", "mlp.pre", "mlp.post", "mlp.out"]]
    assert sorted(cache) == sorted(expected) == sorted(model.hook_names())
    assert cache["blocks.0.attn.k"].shape == (2, cfg.n_kv_heads, 9, cfg.d_head)
    assert cache["blocks.0.mlp.post"].shape == (2, 9, cfg.d_mlp)
    assert torch.equal(cache["logits"], logits)
    # T7: the residual stream adds, never overwrites
    r = cache
    assert torch.allclose(r["blocks.1.resid_mid"], r["blocks.1.resid_pre"] + r["blocks.1.attn.out"], atol=1e-6)
    assert torch.allclose(r["blocks.1.resid_post"], r["blocks.1.resid_mid"] + r["blocks.1.mlp.out"], atol=1e-6)
    assert torch.equal(r["blocks.1.resid_pre"], r["blocks.0.resid_post"])


def test_names_can_be_globs_lists_or_predicates_and_unknown_names_fail():
    model = _model("gpt2")
    tokens = torch.randint(0, V, (1, 5))
    _, c = model.run_with_cache(tokens, names="blocks.*.attn.pattern")
    assert list(c) == ["blocks.0.attn.pattern", "blocks.1.attn.pattern"]
    _, c = model.run_with_cache(tokens, names=lambda n: n.endswith("resid_post"))
    assert list(c) == ["blocks.0.resid_post", "blocks.1.resid_post"]
    with pytest.raises(KeyError, match="blocks.0.attn.W_Q"):
        model.run_with_cache(tokens, names=["blocks.0.attn.W_Q"])  # a weight, not an activation (T9)


def test_without_requests_the_fused_path_runs_and_asking_for_a_pattern_switches_to_explicit(monkeypatch):
    model = _model("gpt2")
    calls = []
    original = Attention.attend
    monkeypatch.setattr(Attention, "attend", lambda self, *a: calls.append(1) or original(self, *a))
    tokens = torch.randint(0, V, (1, 6))
    model(tokens)
    model.run_with_cache(tokens, names=["blocks.0.resid_post", "blocks.1.attn.q"])
    assert calls == []
    model.run_with_cache(tokens, names=["blocks.1.attn.pattern"])
    assert calls == [1]  # only the layer whose pattern was asked for


def test_a_hook_can_replace_an_activation():
    model = _model("gpt2")
    tokens = torch.randint(0, V, (1, 6))
    replacement = torch.randn(1, 6, model.cfg.d_model)
    last = f"blocks.{model.cfg.n_layers - 1}.resid_post"
    logits, _ = model.run_with_cache(tokens, names=None, hooks={last: lambda x, name: replacement})
    expected = model.unembed.norm(replacement) @ model.embed.W_E.T
    assert torch.allclose(logits, expected, atol=1e-5)
    # patching is scoped to the call
    assert not torch.allclose(model(tokens), logits)


def test_inputs_longer_than_the_context_window_are_refused_with_the_numbers():
    model = _model("gpt2")
    with pytest.raises(ContextLengthError, match="33 tokens exceed the context window of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    cache = model.new_cache()
    model(torch.zeros(1, 30, dtype=torch.long), cache=cache)
    with pytest.raises(ContextLengthError, match="30 already cached"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


def test_token_ids_outside_the_vocabulary_are_refused():
    from glassgpt.errors import GlassError

    with pytest.raises(GlassError, match=r"\[0, 101\)"):
        _model("gpt2")(torch.tensor([[3, 101]]))


def test_softmax_with_temperature_is_the_seeds_formula():
    """G12: e^(x/T) / Σ e^(x/T); T → 0 one-hot, T large → uniform."""
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    for T in (0.2, 1.0, 2.0, 7.5):
        e = torch.exp(logits / T)
        assert torch.allclose(softmax_with_temperature(logits, T), e / e.sum())
    assert torch.equal(softmax_with_temperature(logits, 0), torch.tensor([1.0, 0, 0, 0]))
    tied = torch.tensor([[0.5, 3.0, -1.0, 3.0], [3.0, 3.0, 3.0, 3.0]])
    assert torch.equal(softmax_with_temperature(tied, 0), torch.tensor([[0.0, 1, 0, 0], [1.0, 0, 0, 0]]))  # lowest id
    assert softmax_with_temperature(logits, 0.01)[0] > 0.999
    flat = softmax_with_temperature(logits, 1000.0)
    assert (flat - 0.25).abs().max() < 1e-3
    peaks = [softmax_with_temperature(logits, T).max().item() for T in (0.2, 1, 2)]
    assert peaks[0] > peaks[1] > peaks[2]
    with pytest.raises(ValueError):
        softmax_with_temperature(logits, -1)


def test_training_mode_dropout_reaches_both_paths():
    cfg = gpt2_like(dropout=0.5)
    model = GPT(cfg).train()
    tokens = torch.randint(0, V, (1, 8))
    assert not torch.allclose(model(tokens), model(tokens))
    model.eval()
    assert torch.equal(model(tokens), model(tokens))


def test_last_only_gives_the_last_row_of_the_logits():
    model = _model("llama-gqa")
    tokens = torch.randint(0, V, (2, 11))
    assert torch.allclose(model(tokens, last_only=True), model(tokens)[:, -1:], atol=1e-6)


def test_the_rope_table_grows_with_the_positions_and_its_rows_keep_their_values():
    """RoPE tabulates cos and sin for the positions used so far (a long context window's table is megabytes):
    growing it must give exactly the rows a whole table has, and a model whose table starts small must give
    exactly the logits of one whose table covers the window from the start."""
    d_head, n_ctx, theta = 64, 8192, 100000.0
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head))
    angles = torch.outer(torch.arange(n_ctx, dtype=torch.float32), inv_freq).repeat(1, 2)  # (n_ctx, d_head)
    rope = RoPE(d_head, n_ctx, theta)
    assert len(rope.cos) == min(n_ctx, RoPE.FIRST) < n_ctx
    x = torch.randn(1, 2, 3, d_head)
    y = rope(x, torch.tensor([[3000, 3001, 3002]]))  # beyond the table: it doubles until it covers them
    assert 3003 <= len(rope.cos) < n_ctx
    assert torch.equal(rope.cos, angles[: len(rope.cos)].cos()) and torch.equal(rope.sin, angles[: len(rope.sin)].sin())
    x1, x2 = x.chunk(2, dim=-1)
    want = x * angles[3000:3003].cos() + torch.cat([-x2, x1], dim=-1) * angles[3000:3003].sin()
    assert torch.equal(y, want)
    rope.extend(10 * n_ctx)
    assert len(rope.cos) == n_ctx  # never beyond the context window

    torch.manual_seed(0)
    whole = _model("llama-gqa")
    small = RoPE(whole.cfg.d_head, whole.cfg.n_ctx, whole.cfg.rope_theta)
    small.cos, small.sin = small.cos[:4].clone(), small.sin[:4].clone()  # as if it had started at 4 positions
    tokens = torch.randint(0, V, (1, 30))
    want = whole(tokens)
    for block in whole.blocks:
        block.attn.rope = small
    assert torch.equal(whole(tokens), want) and len(small.cos) >= 30
    small.cos[20:] = 1.0  # the control: the rows the growth made are the ones used
    assert not torch.equal(whole(tokens), want)
