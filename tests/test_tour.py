"""The tour's stops, each checked against the control that would show its effect absent.

SmolLM2 is replaced by a small synthetic GGUF (the stops that need pretrained knowledge are
checked on the real SmolLM2 in test_inspect_smollm2.py); the trained models are the tour's own,
on its --quick step budget and the Tiny Shakespeare shipped in the package.
"""

import math

import pytest
import torch
from gguf_synth import tiny_model, write_gguf

from glassgpt.cli import main
from glassgpt.load import load_model
from glassgpt.tour import QUICK, STOPS, Tour, run_tour

pytestmark = pytest.mark.usefixtures("one_thread")

MECHANICS = ["G2", "G3", "G8", "G10", "G11", "G12", "T1", "T2", "T3", "T6", "T7", "T8", "T9", "T10", "T12", "T15"]
TRAINED = ["G7", "T4", "T5", "T11", "T13", "T14", "T16"]


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    t = Tour(out=root / "out", budget=QUICK, log=lambda m: None)
    t._smol = load_model(write_gguf(root / "tiny.gguf", tiny_model()))
    return t


@pytest.fixture(scope="module")
def mechanics(tour):
    return run_tour(tour, MECHANICS)


@pytest.fixture(scope="module")
def trained(tour):
    return run_tour(tour, TRAINED)


# ----------------------------------------------------------------------------- stops without training


def test_mechanics_stops_ran_and_wrote_their_numbers(tour, mechanics):
    assert set(MECHANICS) <= set(mechanics)
    assert (tour.out / "tour.json").is_file()
    for name in ("g12_temperature.png", "t7_residual.png", "t8_pattern.png"):
        assert (tour.out / name).read_bytes()[:4] == b"\x89PNG"


def test_g3_mlp_per_token_attention_from_context(mechanics):
    g3 = mechanics["G3"]
    assert g3["mlp_alone_diff"] < 1e-5 * max(1.0, g3["attn_out_size"])
    assert g3["attn_context_change"] > 0.01 * g3["attn_out_size"]  # a real move, not float noise


def test_g8_block_by_hand(mechanics):
    assert mechanics["G8"]["block_by_hand_diff"] < 1e-5 * mechanics["G8"]["block_change"]


def test_g10_the_system_prompt_is_context(mechanics):
    g10 = mechanics["G10"]
    assert g10["system_first"] is True
    assert g10["system_changes_reply"] > 0.01  # take the system prompt away and the reply's distribution moves


def test_g11_context_window(mechanics):
    assert mechanics["G11"]["error"] == "129 tokens exceed the context window of 128 tokens"


def test_g12_temperature(mechanics):
    g = mechanics["G12"]
    assert g["by_hand_diff"] < 1e-6
    top, ent = g["top_prob"], g["entropy"]
    assert top["0.2"] > top["1.0"] > top["2.0"]  # low T sharpens, high T flattens
    assert ent["0.2"] < ent["1.0"] < ent["2.0"] < g["uniform_entropy"]


def test_t2_t3_t9_t10_by_hand(mechanics):
    assert mechanics["T2"]["by_hand_diff"] < 1e-5
    assert mechanics["T3"]["fused_vs_explicit"] < 1e-4
    assert mechanics["T3"]["std_scaled"] == pytest.approx(1.0, abs=0.15)
    assert mechanics["T3"]["std_raw"] == pytest.approx(math.sqrt(16), rel=0.15)  # d_head = 16
    assert mechanics["T9"]["q_by_hand_diff"] < 1e-5
    assert mechanics["T10"]["value_map_diff"] < 1e-4
    assert mechanics["T10"]["rank"] <= 16


def test_t6_causal(mechanics):
    assert mechanics["T6"]["earlier_change"] == 0.0
    assert mechanics["T6"]["later_change"] > 0.1


def test_t7_stream_is_the_sum_of_the_layers(mechanics):
    assert mechanics["T7"]["sum_diff"] < 1e-5
    assert len(mechanics["T7"]["update_ratio"]) == 2 and all(r > 0 for r in mechanics["T7"]["update_ratio"])


def test_t8_scores_become_the_pattern(mechanics):
    t8 = mechanics["T8"]
    assert t8["scores"][-1] == t8["scores"][-2] and t8["pattern"] == t8["scores"]
    assert t8["softmax_by_hand_diff"] < 1e-5  # pattern = softmax(mask(scores)), row by row
    assert t8["future_scores"] > 0.1 and t8["future_pattern"] == 0.0  # the mask, not the scores, hides the future


# ----------------------------------------------------------------------------- stops that train (--quick budget)


@pytest.mark.slow  # trains the toy and its shuffled twin, T13's six models and T5's two (~1 min of CPU)
def test_trained_stops_have_no_warnings(tour, trained):
    assert all("warnings" not in trained[sid] for sid in TRAINED)
    for name in ("g7_loss.png", "t4_embeddings.png", "t14_qk.png"):
        assert (tour.out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_g7_loss_beats_the_bigram_table(trained):
    g7 = trained["G7"]
    assert g7["val_loss_start"] == pytest.approx(g7["uniform"], abs=0.3)  # untrained ≈ a uniform guess
    assert g7["uniform"] > g7["unigram"] > g7["bigram"]
    assert g7["val_loss_end"] < g7["bigram"]  # more than one character of context is used


@pytest.mark.slow
def test_t11_learning_from_order_against_shuffled_characters(trained):
    t11 = trained["T11"]
    assert 2 * t11["window"] <= t11["steps"]  # the two windows never overlap
    assert t11["train_loss_end"] < t11["bigram"] < t11["train_loss_start"]
    assert t11["shuffled_train_loss_end"] > t11["unigram"] - 0.1  # no order to learn: it stops at the unigram


@pytest.mark.slow
def test_t4_training_shapes_the_embeddings(trained):
    t4 = trained["T4"]
    untrained, after = t4["untrained"], t4["trained"]
    gap = lambda f: f["vowel_vowel"] - f["vowel_consonant"]  # noqa: E731
    assert abs(gap(untrained)) < 0.15 and gap(after) > gap(untrained) + 0.2  # vowels cluster only after training
    classes = lambda f: f["within_class"] - f["across_class"]  # noqa: E731
    assert abs(classes(untrained)) < 0.1 and classes(after) > classes(untrained) + 0.2  # capitals, letters, punctuation
    assert t4["val_loss_untrained_embeddings"] > t4["val_loss_own_embeddings"] + 0.3


@pytest.mark.slow
def test_t5_trained_cross_attention_and_learned_queries(trained):
    t5 = trained["T5"]
    assert t5["alignment"]["trained"] > t5["alignment"]["untrained"] + 0.2  # words read the digit they spell
    assert t5["translation_exact"] > t5["translation_exact_untrained"] + 0.1
    assert t5["classifier_accuracy"] > 0.7 and t5["classifier_accuracy"] > t5["classifier_accuracy_untrained"] + 0.15
    assert t5["learned_pattern"][2] == 4  # four learned queries


@pytest.mark.slow
def test_t13_equal_size_over_seeds(trained):
    t13 = trained["T13"]
    one, four = t13["heads"]["1"], t13["heads"]["4"]
    assert one["parameters"] == four["parameters"]
    assert len(one["val_loss"]) == len(four["val_loss"]) == QUICK.heads_seeds >= 3
    assert one["sd"] > 0 and four["sd"] > 0  # the spread is measured, not assumed
    assert one["mean"] < t13["unigram"] and four["mean"] < t13["unigram"]  # both learned beyond letter counts


@pytest.mark.slow
def test_t14_heads_specialise_on_order_not_on_shuffled_text(trained):
    t14 = trained["T14"]
    prev, entropy = t14["prev_token"], t14["entropy"]
    assert prev["text"][0] > prev["shuffled"][0] + 0.05 and prev["text"][0] > prev["untrained"][0] + 0.05
    assert entropy["text"][0] < entropy["untrained"][0] - 0.5
    assert t14["norm_Q"]["text"][0] > t14["norm_Q"]["untrained"][0]


@pytest.mark.slow
def test_t16_gradient_by_hand_and_overlap_with_spread(trained):
    t16 = trained["T16"]
    assert t16["grad_diff"] < 1e-9 * t16["grad_scale"] + 1e-15
    for run in ("text", "shuffled"):
        c = t16["overlap_change"][run]
        assert c["min"] <= c["mean"] <= c["max"] and c["sd"] > 0


@pytest.mark.slow
def test_untrained_twin_is_the_runs_starting_point(tour, trained):
    from glassgpt.inspect.qk import qk_geometry

    toy = tour.toy()
    assert toy.qk[0]["step"] == 0 and toy.steps == toy.budget == QUICK.toy_steps
    assert qk_geometry(toy.untrained)["norm_Q"] == toy.qk[0]["norm_Q"]  # recorded before the first step


# ----------------------------------------------------------------------------- budgets and errors


def test_a_training_cut_short_says_so(tmp_path):
    lines = []
    t = Tour(out=tmp_path, budget=QUICK, log=lines.append, max_minutes=1e-9)
    facts = run_tour(t, ["G7"])
    toy = t.toy()
    assert toy.short and toy.steps < toy.budget
    assert any("WARNING" in line and f"{toy.steps} of its {toy.budget} steps" in line for line in lines)
    assert facts["G7"]["warnings"]


def test_every_claim_has_a_stop():
    assert [sid for sid, _ in STOPS] == [f"G{i}" for i in range(1, 13)] + [f"T{i}" for i in range(1, 17)]


def test_unknown_stop_is_one_line(capsys):
    assert main(["tour", "--only", "G13"]) == 2
    err = capsys.readouterr().err
    assert "unknown stop(s) G13" in err and len(err.strip().splitlines()) == 1


def test_bad_budget_is_one_line(capsys):
    assert main(["tour", "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--steps: expected a positive integer, got '0'" in err and len(err.strip().splitlines()) == 1


def test_ngram_baselines_by_hand():
    from glassgpt.inspect.baselines import ngram_losses

    train = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])  # 0 is always followed by 1, 1 by 0
    b = ngram_losses(train, train, 3, alpha=1e-9)
    assert b["uniform"] == pytest.approx(math.log(3))
    assert b["unigram"] == pytest.approx(math.log(2), rel=1e-6)  # two tokens, equally often
    assert b["bigram"] == pytest.approx(0.0, abs=1e-6)  # the previous token decides the next
