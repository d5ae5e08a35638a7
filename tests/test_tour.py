"""The tour's stops, run on small models: each checkable claim of the seed, checked.

SmolLM2 is replaced by a small synthetic GGUF and the minute of training by a few seconds;
the slow test at the end runs the pretrained-knowledge stops on the real SmolLM2.
"""

import math
import os

import pytest
import torch
from gguf_synth import tiny_model, write_gguf

from glassgpt.cli import main
from glassgpt.load import load_model
from glassgpt.tour import STOPS, Tour, run_tour, train_toy

pytestmark = pytest.mark.usefixtures("one_thread")


TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    old = os.environ.get("GLASSGPT_CACHE")
    os.environ["GLASSGPT_CACHE"] = str(root / "cache")
    try:
        (root / "text.txt").write_text(TEXT)
        t = Tour(out=root / "out", data=str(root / "text.txt"), seconds=5, log=lambda m: None)
        t._smol = load_model(write_gguf(root / "tiny.gguf", tiny_model()))
        with torch.enable_grad():
            t._toy = train_toy(root / "toy", str(root / "text.txt"), 60, n_layers=2, d_model=32, n_ctx=32,
                               batch_size=8, max_steps=40, eval_every=10, track_qk=10)
        yield t
    finally:
        if old is None:
            os.environ.pop("GLASSGPT_CACHE", None)
        else:
            os.environ["GLASSGPT_CACHE"] = old


@pytest.fixture(scope="module")
def facts(tour):
    return run_tour(tour, [sid for sid, _ in STOPS if sid != "T13"])


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_every_stop_ran_and_wrote_its_numbers(tour, facts):
    assert len(facts) == len(STOPS) - 1
    assert (tour.out / "tour.json").is_file()
    for name in ("g4_distance.png", "g6_lens.png", "g9_plural.png", "g12_temperature.png", "t14_qk.png"):
        assert (tour.out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g3_mlp_per_token_attention_from_context(facts):
    assert facts["G3"]["mlp_alone_diff"] < 1e-4
    assert facts["G3"]["attn_context_change"] > 1e-3


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g7_t11_training_loss_falls(facts):
    g7 = facts["G7"]
    assert g7["val_loss_start"] == pytest.approx(g7["uniform"], abs=0.3)  # untrained ≈ a uniform guess
    assert g7["val_loss_end"] < g7["val_loss_start"] - 0.5
    assert facts["T11"]["train_loss_end"] < facts["T11"]["train_loss_start"]


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g8_block_by_hand(facts):
    assert facts["G8"]["block_by_hand_diff"] < 1e-4


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g10_system_prompt_first(facts):
    assert facts["G10"]["system_first"] is True


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g11_context_window(facts):
    assert facts["G11"]["error"] == "129 tokens exceed the context window of 128 tokens"


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_g12_temperature(facts):
    g = facts["G12"]
    assert g["by_hand_diff"] < 1e-6
    top, ent = g["top_prob"], g["entropy"]
    assert top["0.2"] > top["1.0"] > top["2.0"]  # low T sharpens, high T flattens
    assert ent["0.2"] < ent["1.0"] < ent["2.0"]


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t2_t3_t9_t10_by_hand(facts):
    assert facts["T2"]["by_hand_diff"] < 1e-4
    assert facts["T3"]["fused_vs_explicit"] < 1e-3
    assert facts["T3"]["std_scaled"] == pytest.approx(1.0, abs=0.15)
    assert facts["T3"]["std_raw"] == pytest.approx(math.sqrt(16), rel=0.15)  # d_head = 16
    assert facts["T9"]["q_by_hand_diff"] < 1e-4
    assert facts["T10"]["value_map_diff"] < 1e-4
    assert facts["T10"]["rank"] <= 16


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t4_training_sharpens_attention(facts):
    t4 = facts["T4"]
    assert t4["untrained"] == pytest.approx(t4["uniform"], rel=0.05)  # random init: nearly uniform
    assert t4["trained"] < t4["untrained"]


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t5_four_kinds_of_attention(facts):
    assert facts["T5"]["self"] == [1, 4, 6, 6]
    assert facts["T5"]["cross"] == [1, 4, 6, 9]
    assert facts["T5"]["learned"] == [1, 4, 3, 9]


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t6_causal(facts):
    assert facts["T6"]["earlier_change"] == 0.0
    assert facts["T6"]["later_change"] > 0


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t7_stream_is_the_sum_of_the_layers(facts):
    assert facts["T7"]["sum_diff"] < 1e-5
    assert len(facts["T7"]["update_ratio"]) == 2 and all(r > 0 for r in facts["T7"]["update_ratio"])


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t8_n_by_n(facts):
    s = facts["T8"]["scores"]
    assert s[-1] == s[-2] and facts["T8"]["pattern"] == s


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_t14_t16_tracked_and_gradient(facts, tour):
    assert [r["step"] for r in tour.toy().qk][:2] == [0, 10]
    q0, q1 = facts["T14"]["norm_Q"]
    assert q1 != q0
    assert facts["T16"]["grad_diff"] < 1e-8


@pytest.mark.slow  # shares the module's tour: a trained toy model and every stop (~30 s)
def test_untrained_twin_is_the_runs_starting_point(tour):
    from glassgpt.inspect.qk import qk_geometry

    toy = tour.toy()
    assert toy.qk[0]["step"] == 0
    assert qk_geometry(toy.untrained)["norm_Q"] == toy.qk[0]["norm_Q"]  # recorded before the first step


def test_t13_heads_experiment_equal_parameters(tmp_path):
    from glassgpt.inspect.multihead import train_heads

    results = [train_heads(TEXT, H, steps=8, d_model=32, n_layers=1, n_ctx=16, batch_size=4) for H in (1, 4)]
    assert results[0].parameters == results[1].parameters
    assert all(math.isfinite(r.val_loss) and r.val_loss < math.log(len(set(TEXT))) + 0.5 for r in results)


def test_unknown_stop_is_one_line(capsys):
    assert main(["tour", "--only", "G13"]) == 2
    err = capsys.readouterr().err
    assert "unknown stop(s) G13" in err and len(err.strip().splitlines()) == 1
