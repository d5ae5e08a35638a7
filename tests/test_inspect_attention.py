"""Attention patterns and scores read out of the model (T2, T6, T8)."""

import math

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.inspect.attention import attention_patterns, attention_scores, top_attended
from glassgpt.model import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(d_vocab=40, n_ctx=12, d_model=32, n_layers=2, n_heads=4, positions="rope",
                           norm="rmsnorm", mlp="swiglu", attn_bias=False, mlp_bias=False)).eval()


def test_shapes_rows_and_causality(model):
    tokens = torch.randint(0, 40, (9,))
    p = attention_patterns(model, tokens)
    assert p.shape == (2, 4, 9, 9)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 4, 9))
    assert (p.triu(1) == 0).all()  # T6: no weight on the future
    assert attention_patterns(model, tokens, layer=1).shape == (1, 4, 9, 9)
    torch.testing.assert_close(attention_patterns(model, tokens, layer=1)[0], p[1])


def test_scores_are_q_dot_k_over_sqrt_dk_before_the_mask(model):
    """T8: the scores are the full n×n matrix (future included); masking then softmax gives the pattern."""
    tokens = torch.randint(0, 40, (6,))
    s = attention_scores(model, tokens, layer=0)[0]  # (H, T, T)
    _, cache = model.run_with_cache(tokens.unsqueeze(0), names=["blocks.0.attn.q", "blocks.0.attn.k"])
    q, k = cache["blocks.0.attn.q"][0], cache["blocks.0.attn.k"][0]
    torch.testing.assert_close(s, q @ k.transpose(-2, -1) / math.sqrt(model.cfg.d_head))
    assert torch.isfinite(s).all() and (s.triu(1) != 0).any()
    masked = s.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(torch.softmax(masked, -1), attention_patterns(model, tokens, layer=0)[0])


def test_top_attended_matches_the_pattern(model):
    tokens = torch.randint(0, 40, (8,))
    p = attention_patterns(model, tokens, layer=1)[0]
    top = top_attended(model, tokens, layer=1, k=3)
    assert sorted(top) == [0, 1, 2, 3]
    for h, rows in top.items():
        assert len(rows) == 8 and len(rows[0]) == 1 and len(rows[5]) == 3  # query i sees i + 1 keys
        for i, row in enumerate(rows):
            j, w = row[0]
            assert j <= i and w == pytest.approx(float(p[h, i].max()))
            assert [x[1] for x in row] == sorted((x[1] for x in row), reverse=True)
    assert list(top_attended(model, tokens, layer=0, head=2)) == [2]


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": 2}, "layer 2 is out of range: this model has layers 0..1"),
    ({"layer": -1}, "layers 0..1"),
])
def test_bad_layer(model, kwargs, message):
    with pytest.raises(GlassError, match=message):
        attention_patterns(model, [1, 2, 3], **kwargs)


def test_bad_head(model):
    with pytest.raises(GlassError, match="head 4 is out of range: this model has heads 0..3"):
        top_attended(model, [1, 2, 3], layer=0, head=4)


def test_too_long_for_the_context(model):
    with pytest.raises(GlassError, match="13 tokens exceed the context window of 12"):
        attention_patterns(model, list(range(13)))
