"""The inspection tools on the real SmolLM2-135M (slow: dequantising the GGUF takes a while).

These check claims that need pretrained knowledge: the lens ends at the real logits and
finds the answer, embedding directions are real (G9), induction heads exist, and — the
tour's G4 with its control — deep layers' longer mean attention distance is the attention
sink: with token 0 left out, deep layers look no further back than shallow ones. The tour's
SmolLM2 stops (G4, G5, G6, G9) run here on the real model and their numbers are checked.
"""

import pytest
import torch

from glassgpt.inspect import embed
from glassgpt.inspect.heads import head_scores
from glassgpt.inspect.lens import lens_logits, logit_lens

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def smol():
    from glassgpt.load import load_model

    return load_model(None)


def test_lens_last_layer_is_the_real_output_and_finds_rome(smol):
    ids = smol.tokenizer.encode("The capital of France is Paris. The capital of Italy is")
    names, lens, logits = lens_logits(smol.model, ids)
    assert len(names) == 31
    with torch.no_grad():
        torch.testing.assert_close(lens[-1], smol.model(torch.tensor([ids]))[0], rtol=1e-4, atol=1e-4)
    top = logit_lens(smol.model, ids, k=1).top_ids[-1, -1, 0]
    assert smol.tokenizer.decode([int(top)]) == " Rome"


def test_g9_analogy_and_directions(smol):
    m, tok = smol.model, smol.tokenizer
    assert " queen" in [w for w, _ in embed.analogy(m, tok, "king", "man", "woman", k=3)]
    plural = embed.pair_alignment(m, tok, [("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("car", "cars"),
                                           ("tree", "trees"), ("book", "books"), ("bird", "birds")])
    assert plural["mean_cosine"] > plural["baseline_mean"] + 3 * plural["baseline_std"]
    d = embed.direction(m, tok, [("man", "woman"), ("king", "queen"), ("boy", "girl")])
    proj = dict(embed.project(m, tok, ["actor", "actress", "prince", "princess", "uncle", "aunt"], d))
    assert proj["actress"] > proj["actor"] and proj["princess"] > proj["prince"] and proj["aunt"] > proj["uncle"]


def test_induction_heads(smol):
    text = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.")
    s = head_scores(smol.model, smol.tokenizer.encode(text), bos=smol.tokenizer.bos_id)
    assert s.induction.max() > 0.5  # some head continues a repeated random sequence
    assert s.induction[:3].max() < 0.2  # … but none in the first layers (induction needs two layers)
    assert s.induction.median() < 0.2  # and most heads are not induction heads: the score is not a given


@pytest.fixture(scope="module")
def tour(smol, tmp_path_factory):
    from glassgpt.tour import Tour, run_tour

    t = Tour(out=tmp_path_factory.mktemp("tour"), log=lambda m: None)
    t._smol = smol
    return run_tour(t, ["G4", "G5", "G6", "G9"])


def test_g4_deep_layers_reach_further_only_through_the_sink(tour):
    g4 = tour["G4"]
    assert g4["distance_late"] > g4["distance_early"] + 3  # the plain measure: deep layers look further back …
    assert g4["sink_late"] > g4["sink_early"] + 0.2  # … because they rest far more weight on token 0
    assert g4["without_first_late"] < g4["without_first_early"]  # token 0 left out, the order reverses
    assert g4["without_first_late"] < g4["uniform_without_first"]  # and every third stays local against uniform
    assert g4["without_first_early"] < g4["uniform_without_first"]


def test_g5_the_mlps_per_token_work_matters(tour):
    g5 = tour["G5"]
    assert g5["p_answer"] > 0.5
    assert min(g5["p_answer_without"]["zero"]) < 0.1  # some layer's MLP carries the answer
    assert max(g5["delta"]["zero"]) > 1.0
    top = g5["top_layer"]
    assert g5["delta"]["mean"][top] > 1.0  # where the MLP matters most, its mean output is not enough: per-token work
    assert g5["median"]["mean"] < g5["median"]["zero"] < g5["median"]["shuffle"]  # a constant part; the wiring counts
    assert g5["near_zero_post"] > g5["near_zero_pre"]  # the non-linearity silences units


def test_g6_the_answer_appears_in_the_last_layers(tour):
    g6 = tour["G6"]
    assert g6["final"] == " Rome"
    assert g6["settles_at"] >= g6["n_stages"] - 4  # only the last few blocks
    assert max(g6["p_final"][: g6["n_stages"] // 2]) < 0.01  # the first half of the layers has not found it


def test_g9_every_pair_reported_against_mismatched_pairs(tour):
    g9 = tour["G9"]
    assert " queen" in g9["analogy"][:2]
    for name in ("plural", "female"):
        r = g9[name]
        assert len(r["pairs"]) == 8
        assert r["matched_mean"] > r["mismatched_mean"] > r["random_mean"]
        assert r["above_mismatched"] >= 6
    projection = {tuple(row["pair"]): row for row in g9["projection"]}
    assert projection[("actor", "actress")]["right_way"] and projection[("prince", "princess")]["right_way"]
    assert not projection[("nephew", "niece")]["right_way"]  # the pair that goes the wrong way is kept …
    assert projection[("nephew", "niece")]["several_tokens"] == ["niece"]  # … with its multi-token word noted
