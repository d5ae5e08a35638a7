"""Embeddings as directions (G9), on a vocabulary with planted "plural" and "female" directions.

The oracle is the construction: W_E rows are random, except that every plural row is its
singular row plus one fixed vector p, and every female row its male row plus f.
"""

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.inspect.embed import (analogy, direction, nearest, pair_alignment, pair_report, project, word_ids,
                                    word_vector)
from glassgpt.model import GPT
from glassgpt.tokenizer import BPETokenizer, CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


SINGULAR = ["cat", "dog", "house", "tree", "bird", "car", "book", "river"]
MALE_FEMALE = [("man", "woman"), ("king", "queen"), ("boy", "girl"), ("father", "mother")]
OTHER = ["apple", "green", "seven", "under", "quick", "stone", "music", "paper", "light", "sound"]


@pytest.fixture(scope="module")
def planted():
    words = SINGULAR + [w + "s" for w in SINGULAR] + [w for p in MALE_FEMALE for w in p] + OTHER
    tok = BPETokenizer.train([" " + " ".join(words)] * 50, vocab_size=600)
    torch.manual_seed(0)
    D = 64
    model = GPT(ModelConfig(d_vocab=tok.vocab_size, n_ctx=8, d_model=D, n_layers=1, n_heads=2))
    p, f = torch.randn(D), torch.randn(D)
    with torch.no_grad():
        W = torch.randn(tok.vocab_size, D) / D**0.5 * 3
        for w in SINGULAR:
            (i,), (j,) = word_ids(tok, w), word_ids(tok, w + "s")
            W[j] = W[i] + p / D**0.5 * 3
        for m, fe in MALE_FEMALE:
            (i,), (j,) = word_ids(tok, m), word_ids(tok, fe)
            W[j] = W[i] + f / D**0.5 * 3
        model.embed.W_E.copy_(W)
    return model, tok, p, f


def test_every_planted_word_is_one_token(planted):
    _, tok, _, _ = planted
    for w in SINGULAR + ["woman", "queen"]:
        assert len(word_ids(tok, w)) == 1


def test_direction_recovers_the_planted_vector(planted):
    model, tok, p, f = planted
    d = direction(model, tok, [(w, w + "s") for w in SINGULAR[:3]])
    assert torch.nn.functional.cosine_similarity(d, p, dim=0) > 0.999
    d = direction(model, tok, [("man", "woman")])
    assert torch.nn.functional.cosine_similarity(d, f, dim=0) > 0.999


def test_projection_separates_plurals(planted):
    model, tok, _, _ = planted
    d = direction(model, tok, [("cat", "cats"), ("dog", "dogs")])
    proj = dict(project(model, tok, SINGULAR + [w + "s" for w in SINGULAR], d))
    for w in SINGULAR:  # held-out pairs too: each plural lies further along the direction by exactly |p|
        assert proj[w + "s"] - proj[w] == pytest.approx(float(d.norm()), rel=1e-4)
    assert list(proj) == SINGULAR + [w + "s" for w in SINGULAR]  # order kept


def test_analogy_king_man_woman_queen(planted):
    model, tok, _, _ = planted
    result = analogy(model, tok, "king", "man", "woman", k=3)
    assert result[0][0] == " queen"
    assert not {" king", " man", " woman"} & {w for w, _ in result}


def test_nearest_by_cosine_leaves_the_query_out(planted):
    model, tok, _, _ = planted
    vec, _ = word_vector(model, tok, "queen")
    top = nearest(model, tok, vec, k=1)
    assert top == [(" queen", pytest.approx(1.0, abs=1e-5))]
    top = nearest(model, tok, "queen", k=5)
    assert " queen" not in [w for w, _ in top] and len(top) == 5
    assert [c for _, c in top] == sorted((c for _, c in top), reverse=True)
    W = model.embed.W_E.detach()
    best = torch.nn.functional.cosine_similarity(W, vec.unsqueeze(0), dim=-1)
    best[word_ids(tok, "queen")] = -2
    assert top[0][1] == pytest.approx(float(best.max()), abs=1e-5)


def test_pair_alignment_against_the_random_baseline(planted):
    model, tok, _, _ = planted
    real = pair_alignment(model, tok, [(w, w + "s") for w in SINGULAR])
    assert real["mean_cosine"] > 0.99
    assert abs(real["baseline_mean"]) < 0.1 and real["baseline_std"] > 0
    assert real["z"] > 5
    assert len(real["cosines"]) == len(SINGULAR)
    fake = pair_alignment(model, tok, list(zip(OTHER[:5], OTHER[5:])))  # unrelated pairs: no shared direction
    assert abs(fake["mean_cosine"] - fake["baseline_mean"]) < 3 * fake["baseline_std"]


def test_pair_report_each_pair_against_mismatched_and_random_pairs(planted):
    model, tok, _, _ = planted
    pairs = [(w, w + "s") for w in SINGULAR[:6]] + [("apple", "green"), ("zebrafish", "stone")]  # two impostors
    r = pair_report(model, tok, pairs)
    rows = {tuple(row["pair"]): row for row in r["pairs"]}
    assert len(rows) == len(pairs)  # every pair is reported, the ones that fail too
    for w in SINGULAR[:6]:
        assert rows[(w, w + "s")]["carries"] and rows[(w, w + "s")]["cosine"] > r["mismatched_mean"]
    assert not rows[("apple", "green")]["carries"] and not rows[("zebrafish", "stone")]["carries"]
    assert rows[("zebrafish", "stone")]["several_tokens"] == ["zebrafish"]
    assert rows[("cat", "cats")]["several_tokens"] == []
    assert r["matched_mean"] > r["mismatched_mean"] > r["random_mean"]  # cat → dogs still has some plural in it
    assert abs(r["random_mean"]) < 3 * r["random_std"] / r["n_random"] ** 0.5 + 0.05


def test_multi_token_word_is_the_mean_of_its_pieces(planted):
    model, tok, _, _ = planted
    ids = word_ids(tok, "zebrafish")
    assert len(ids) > 1
    vec, pieces = word_vector(model, tok, "zebrafish")
    assert "".join(pieces) == " zebrafish" and len(pieces) == len(ids)
    torch.testing.assert_close(vec, model.embed.W_E.detach()[ids].mean(0))


def test_unembed_space_uses_W_U():
    tok = CharTokenizer("abc")
    model = GPT(ModelConfig(d_vocab=3, n_ctx=4, d_model=8, n_layers=1, n_heads=2, tie_embeddings=False))
    vec, pieces = word_vector(model, tok, "b", space="unembed")
    assert pieces == ["b"]
    torch.testing.assert_close(vec, model.unembed.W_U.detach()[:, 1])


@pytest.mark.parametrize("call, message", [
    (lambda m, t: word_vector(m, t, "abz"), "'abz' cannot be encoded"),
    (lambda m, t: word_vector(m, t, "  "), "not a word"),
    (lambda m, t: word_vector(m, t, "a", space="middle"), "space must be one of"),
    (lambda m, t: pair_alignment(m, t, [("a", "b")]), "at least two pairs"),
    (lambda m, t: direction(m, t, []), "at least one pair"),
    (lambda m, t: pair_report(m, t, [("a", "b"), ("b", "c")]), "at least three pairs"),
])
def test_bad_words(call, message):
    tok = CharTokenizer("abc")
    model = GPT(ModelConfig(d_vocab=3, n_ctx=4, d_model=8, n_layers=1, n_heads=2))
    with pytest.raises(GlassError, match=message):
        call(model, tok)
