import itertools
import math

import pytest
import torch

from glassgpt.errors import ContextLengthError, GlassError
from glassgpt.model import Attention, Block
from glassgpt.seq2seq.decode import beam_search, greedy
from glassgpt.seq2seq.model import EncoderDecoder, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2


def tiny(**kw) -> EncoderDecoder:
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(**{"src_vocab": 9, "tgt_vocab": 8, "src_ctx": 6, "tgt_ctx": 10, "d_model": 32, "n_heads": 4,
                           **kw})
    model = EncoderDecoder(cfg).eval()
    with torch.no_grad():  # larger weights than the init, so that patterns and choices are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model


def test_built_from_the_gpt_parts():
    model = tiny()
    blocks = list(model.encoder.blocks) + list(model.decoder.blocks)
    assert all(type(b) is Block for b in blocks)
    assert all(not b.attn.causal and b.cross_attn is None for b in model.encoder.blocks)
    assert all(b.attn.causal and isinstance(b.cross_attn, Attention) and b.cross_attn.cross for b in model.decoder.blocks)


def test_shapes_and_cross_attention_pattern():
    model = tiny()
    src = torch.tensor([[3, 4, 5, 6], [7, 8, PAD, PAD]])  # (B=2, S=4)
    tgt = torch.tensor([[BOS, 3, 4, 5, 6], [BOS, 7, 3, 3, 3]])  # (B=2, T=5)
    logits, cache = model.run_with_cache(src, tgt, names=["decoder.blocks.*.cross_attn.pattern",
                                                          "encoder.blocks.0.attn.pattern"])
    assert logits.shape == (2, 5, 8)
    cross = cache["decoder.blocks.1.cross_attn.pattern"]
    assert cross.shape == (2, 4, 5, 4)  # (B, H, T, S): every target position over every source position
    assert torch.allclose(cross.sum(-1), torch.ones(2, 4, 5))
    assert (cross[1, :, :, 2:] == 0).all() and (cross[0] > 0).all()  # source padding is never read
    enc = cache["encoder.blocks.0.attn.pattern"]
    assert enc.shape == (2, 4, 4, 4) and (enc[0].triu(1) > 0).any()  # bidirectional: looks ahead too
    assert (enc[1, :, :, 2:] == 0).all()


def test_padding_the_source_changes_nothing():
    model = tiny()
    tgt = torch.tensor([[BOS, 5, 6, 7]])
    alone = model(torch.tensor([[3, 4]]), tgt)
    padded = model(torch.tensor([[3, 4, PAD, PAD], [5, 6, 7, 8]]), torch.cat([tgt, tgt]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_encoder_sees_both_ways_decoder_only_back():
    model = tiny()
    src, tgt = torch.tensor([[3, 4, 5, 6]]), torch.tensor([[BOS, 3, 4, 5]])
    memory, mask = model.encode(src)
    memory2, _ = model.encode(torch.tensor([[3, 4, 5, 8]]))
    assert not torch.allclose(memory[0, 0], memory2[0, 0])  # the last source token reaches the first
    a = model(src, tgt)
    b = model(src, torch.tensor([[BOS, 3, 4, 7]]))
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6) and not torch.allclose(a[0, 3], b[0, 3])  # T6


def test_fused_equals_explicit():
    model = tiny()
    src, tgt = torch.tensor([[3, 4, 5, PAD], [6, 7, 8, 3]]), torch.tensor([[BOS, 3, 4], [BOS, 5, 6]])
    fused = model(src, tgt)
    explicit, _ = model.run_with_cache(src, tgt, names="all")  # every pattern asked for: the explicit path
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_cached_decoding_equals_uncached():
    model = tiny()
    src = torch.tensor([[3, 4, 5, 6], [7, PAD, PAD, PAD], [8, 8, 3, PAD]])
    t1, l1 = greedy(model, src, BOS, EOS, use_cache=True)
    t2, l2 = greedy(model, src, BOS, EOS, use_cache=False)
    assert torch.equal(t1, t2)
    finite = torch.isfinite(l2)
    assert torch.equal(torch.isfinite(l1), finite) and torch.allclose(l1[finite], l2[finite], atol=1e-4)
    assert t1.shape[1] >= 2 and not (t1 == t1[:, :1]).all()  # a real decode, not one repeated token


def test_cross_keys_and_values_are_computed_once():
    model = tiny()
    memory, mask = model.encode(torch.tensor([[3, 4, 5]]))
    cache, cross = model.new_caches()
    model.decode(torch.tensor([[BOS]]), memory, mask, cache, cross)
    k0 = cross.layers[0].k
    calls = []
    with model.hooks({"decoder.blocks.0.cross_attn.k": lambda x, name: calls.append(x)}):
        model.decode(torch.tensor([[4]]), None, mask, cache, cross)  # no memory: it must come from the cache
    assert calls[0].data_ptr() == cross.layers[0].k.data_ptr() == k0.data_ptr()  # reused, not recomputed
    assert cache.length == 2 and cross.layers[0].length == 3


def test_beam_of_one_is_greedy():
    model = tiny()
    for row in ([3, 4, 5], [6], [8, 7, 6, 5, 4]):
        src = torch.tensor([row])
        tokens, _ = greedy(model, src, BOS, EOS)
        best = beam_search(model, src, BOS, EOS, beam=1)[0]
        ids = tokens[0].tolist()
        assert best.tokens == ids[: ids.index(EOS) + 1]


@torch.no_grad()
def teacher_forced_logprob(model, src, tokens) -> float:
    tgt = torch.tensor([[BOS] + tokens[:-1]])
    logits = model(src, tgt)[0]
    logits[:, [PAD, BOS]] = float("-inf")
    last = model.cfg.tgt_ctx - 1  # the decoder's last step: only <eos> is allowed
    if len(tokens) > last:
        logits[last, torch.arange(logits.shape[-1]) != EOS] = float("-inf")
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[t, tok] for t, tok in enumerate(tokens)))


def test_wide_beam_finds_the_best_sequence():
    """With a beam wider than all sequences, beam search is exhaustive: compare with brute force."""
    model = tiny(tgt_vocab=5, tgt_ctx=4)  # tokens 3, 4 and <eos>; at most 4 decoder steps
    src = torch.tensor([[3, 4, 5]])
    hyps = beam_search(model, src, BOS, EOS, beam=64)
    every = [list(body) + [EOS] for L in range(4) for body in itertools.product([3, 4], repeat=L)]
    scores = sorted(((teacher_forced_logprob(model, src, s), s) for s in every), reverse=True)
    assert hyps[0].tokens == scores[0][1]
    assert [h.tokens for h in hyps] == [s for _, s in scores]  # all of them, best first
    for h in hyps:
        assert math.isclose(h.logprob, teacher_forced_logprob(model, src, h.tokens), abs_tol=1e-4)


def test_limits_are_clear_errors():
    model = tiny()
    with pytest.raises(ContextLengthError, match="7 tokens in the source exceed the context window of 6"):
        model.encode(torch.tensor([[3] * 7]))
    with pytest.raises(GlassError, match=r"\[0, 9\)"):
        model.encode(torch.tensor([[3, 9]]))
    with pytest.raises(GlassError, match="not <pad>"):
        model.encode(torch.tensor([[PAD, PAD]]))
    with pytest.raises(GlassError, match="divisible"):
        Seq2SeqConfig(d_model=30, n_heads=4)
