"""Q/K tracking during training (T14, T16): the geometry, and the callback writing its records."""

import json
import math

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.errors import GlassError
from glassgpt.inspect.qk import QKTracker, principal_angle_cosines, qk_geometry, read_records
from glassgpt.model import GPT
from glassgpt.tokenizer import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_principal_angles_of_known_subspaces():
    e = torch.eye(5)
    theta = 0.3
    A = e[:, [0, 1]]
    B = torch.stack([math.cos(theta) * e[0] + math.sin(theta) * e[2], e[1]], dim=1)
    torch.testing.assert_close(principal_angle_cosines(A, B), torch.tensor([1.0, math.cos(theta)]))
    torch.testing.assert_close(principal_angle_cosines(A, A @ torch.tensor([[2.0, 1.0], [0.0, 3.0]])), torch.ones(2))
    torch.testing.assert_close(principal_angle_cosines(A, e[:, [2, 3]]), torch.zeros(2))


def test_geometry_per_head_by_hand():
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_vocab=10, n_ctx=8, d_model=16, n_layers=2, n_heads=4, n_kv_heads=2))
    g = qk_geometry(model)
    assert len(g["qk_cosine"]) == 2 and len(g["qk_cosine"][0]) == 4
    attn = model.blocks[1].attn
    W_Q = attn.W_Q.detach()[:, 3 * 4:4 * 4]  # head 3 …
    W_K = attn.W_K.detach()[:, 1 * 4:2 * 4]  # … reads key/value head 1 (grouped-query)
    assert g["qk_cosine"][1][3] == pytest.approx(float((W_Q * W_K).sum() / W_Q.norm() / W_K.norm()), abs=1e-6)
    assert g["norm_Q"][1][3] == pytest.approx(float(W_Q.norm()), rel=1e-6)
    assert g["norm_K"][1][3] == pytest.approx(float(W_K.norm()), rel=1e-6)
    assert len(g["angles_deg"][1][3]) == 4 and all(0 <= a <= 90 for a in g["angles_deg"][1][3])


def test_tracker_records_during_a_training_loop(tmp_path):
    text = "to be or not to be, that is the question. " * 20
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_vocab=tok.vocab_size, n_ctx=32, d_model=32, n_layers=2, n_heads=2))
    tracker = QKTracker(tmp_path, model, tok, every=3)
    data = torch.tensor(tok.encode(text))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    class Trainer:
        step = 0

    trainer = Trainer()
    for step in range(1, 8):
        i = torch.randint(0, len(data) - 33, (8,))
        x = torch.stack([data[j:j + 32] for j in i])
        y = torch.stack([data[j + 1:j + 33] for j in i])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        trainer.step = step
        tracker.on_step(trainer, step, {"loss": loss.item()})
    assert model.training  # measuring did not leave the model in eval mode
    tracker.on_eval(trainer, 7, {"val_loss": 2.5})
    tracker.on_end(trainer)

    lines = (tmp_path / "qk.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["step"] for r in records] == [0, 3, 6, 7]  # the random start, every 3 steps, and the last
    assert records == read_records(tmp_path)
    last = records[-1]
    assert last["val_loss"] == 2.5 and "loss" in last
    for key in ("qk_cosine", "principal_cos", "norm_Q", "norm_K", "entropy", "prev_token", "induction"):
        assert len(last[key]) == 2 and len(last[key][0]) == 2
    assert last["norm_Q"] != records[0]["norm_Q"]  # the weights moved between records
    g = qk_geometry(model)
    assert last["norm_Q"] == g["norm_Q"]
    assert (tmp_path / "qk.png").read_bytes()[:4] == b"\x89PNG"


def test_resumed_run_keeps_history_up_to_the_checkpoint(tmp_path):
    tok = CharTokenizer("abcdefgh ")
    model = GPT(ModelConfig(d_vocab=tok.vocab_size, n_ctx=16, d_model=16, n_layers=1, n_heads=2))
    first = QKTracker(tmp_path, model, tok, every=2)
    for step in (1, 2, 3, 4):
        first.on_step(None, step, {"loss": 1.0})
    assert [r["step"] for r in read_records(tmp_path)] == [0, 2, 4]
    again = QKTracker(tmp_path, model, tok, every=2)  # resumed from a checkpoint at step 2
    again.on_step(None, 3, {})
    again.on_step(None, 4, {})
    assert [r["step"] for r in read_records(tmp_path)] == [0, 2, 4]


def test_bad_every(tmp_path):
    model = GPT(ModelConfig(d_vocab=10, n_ctx=8, d_model=8, n_layers=1, n_heads=2))
    with pytest.raises(GlassError, match="--track-qk must be a positive"):
        QKTracker(tmp_path, model, CharTokenizer("abc "), every=0)


def test_missing_records(tmp_path):
    with pytest.raises(GlassError, match="qk.jsonl not found"):
        read_records(tmp_path)
