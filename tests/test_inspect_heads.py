"""Head scores: checked on hand-made patterns and on a hand-built model whose heads are known."""

import math

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.inspect.heads import (distance_by_layer, distance_without_first, first_token_score, head_scores, induction_score,
                                    mean_distance, mean_entropy, prev_token_score, repeated_random_tokens,
                                    uniform_pattern)
from glassgpt.model import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


T = 8


def _rows(fn) -> torch.Tensor:
    """A (T, T) pattern whose row i puts all its weight on key fn(i)."""
    p = torch.zeros(T, T)
    for i in range(T):
        p[i, fn(i)] = 1.0
    return p


def test_scores_of_pure_patterns():
    prev = _rows(lambda i: max(i - 1, 0))
    first = _rows(lambda i: 0)
    uniform = torch.ones(T, T).tril() / torch.arange(1, T + 1).unsqueeze(1)
    assert prev_token_score(prev) == 1 and first_token_score(prev) == pytest.approx(1 / (T - 1))
    assert first_token_score(first) == 1
    assert mean_distance(prev) == 1
    assert mean_distance(first) == pytest.approx(sum(range(1, T)) / (T - 1))
    assert mean_entropy(prev) == 0
    assert mean_entropy(uniform) == pytest.approx(sum(math.log(i + 1) for i in range(1, T)) / (T - 1))
    stacked = torch.stack([prev, first])  # scores keep the leading (layer, head) dimensions
    assert prev_token_score(stacked).shape == (2,)
    torch.testing.assert_close(uniform_pattern(T), uniform)


def test_distance_without_the_first_token_separates_the_sink():
    sink_and_prev = _rows(lambda i: 0) * 0.8 + _rows(lambda i: max(i - 1, 0)) * 0.2  # 80% on token 0, 20% just before
    assert mean_distance(sink_and_prev) > 2.5  # the plain distance is dominated by the far-away token 0
    assert distance_without_first(sink_and_prev) == pytest.approx(1.0)  # left out, the head is local
    assert first_token_score(sink_and_prev)[..., ] == pytest.approx(0.8 + 0.2 / (T - 1))
    far = _rows(lambda i: 1)  # a head that really looks far back (to token 1)
    assert distance_without_first(far) == pytest.approx(sum(range(1, T - 1)) / (T - 2))
    assert distance_without_first(uniform_pattern(T)) == pytest.approx(sum((i - 1) / 2 for i in range(2, T)) / (T - 2))


def test_g4_verdict_tells_a_sink_from_a_far_reach():
    local = _rows(lambda i: max(i - 1, 0))
    sink = _rows(lambda i: 0) * 0.8 + local * 0.2  # far back only through token 0
    far = _rows(lambda i: 1)  # far back with token 0 left out too
    layers = lambda *ps: torch.stack([torch.stack([p, p]) for p in ps])  # (L, H=2, T, T)

    through_sink = distance_by_layer(layers(local, local, local, sink, sink, sink))
    assert through_sink.distance[-1] > through_sink.distance[0]  # the plain measure says "deep looks further" …
    assert "NOT support" in through_sink.verdict()  # … the control says it is the sink
    really_far = distance_by_layer(layers(local, local, local, far, far, far))
    assert "holds here" in really_far.verdict()
    flat = distance_by_layer(layers(far, far, far, local, local, local))
    assert "not shown" in flat.verdict()
    assert through_sink.uniform == pytest.approx(float(mean_distance(uniform_pattern(T))))
    assert through_sink.first_share[-1] > through_sink.first_share[0]


def test_induction_score_of_an_ideal_induction_pattern():
    n, start = 5, 1
    Tn = start + 2 * n
    ideal = torch.zeros(Tn, Tn)
    ideal[:, 0] = 1.0
    for t in range(n):
        ideal[start + n + t] = 0
        ideal[start + n + t, start + t + 1] = 1.0
    assert induction_score(ideal, n, start) == 1
    assert induction_score(torch.eye(Tn), n, start) == 0


def test_repeated_random_tokens():
    r = repeated_random_tokens(100, 6, seed=1, bos=99)
    assert r[0] == 99 and len(r) == 13 and torch.equal(r[1:7], r[7:])


def _hand_built() -> GPT:
    """One layer, two heads, positions as one-hot W_pos rows and no token content.

    Head 0: q_i = c·e_i, k_j = e_{j+1} → score c·[i = j+1]: a previous-token head.
    Head 1: q_i = c·e_0, k_j = [j = 0]·e_0 → all weight on position 0: a first-token head.
    """
    n_ctx, d_head = 16, 16
    model = GPT(ModelConfig(d_vocab=10, n_ctx=n_ctx, d_model=2 * d_head, n_layers=1, n_heads=2, norm="rmsnorm",
                            attn_bias=False)).eval()
    c = 20.0
    with torch.no_grad():
        model.embed.W_E.zero_()
        model.embed.W_pos.zero_()
        model.embed.W_pos[:, :n_ctx] = torch.eye(n_ctx)
        attn = model.blocks[0].attn
        for W in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
            W.zero_()
        for i in range(n_ctx):
            attn.W_Q[i, i] = c
            if i + 1 < d_head:
                attn.W_K[i, i + 1] = 1.0
            attn.W_Q[i, d_head] = c  # head 1's query: the same for every position
        attn.W_K[0, d_head] = 1.0
    return model


def test_hand_built_heads_are_detected():
    model = _hand_built()
    s = head_scores(model, tokens=torch.randint(0, 10, (12,)))
    assert s.prev_token.shape == (1, 2)
    assert s.prev_token[0, 0] > 0.99 and s.prev_token[0, 1] < 0.2
    assert s.first_token[0, 1] > 0.99 and s.first_token[0, 0] < 0.2
    assert s.distance[0, 0] == pytest.approx(1.0, abs=0.02)
    assert s.distance[0, 1] == pytest.approx(sum(range(1, 12)) / 11, abs=0.1)
    assert s.entropy.max() < 0.1
    assert s.induction.max() < 0.2  # neither head is an induction head
