"""Checkpoints: exact round-trip, keep-last-K, atomic folders, damaged files named, run folders loadable."""

import pytest
import torch

from glassgpt.checkpoint import (checkpoint_name, is_run_folder, latest_checkpoint, list_checkpoints, load_weights,
                                 read_checkpoint, save_checkpoint)
from glassgpt.config import preset
from glassgpt.errors import CheckpointError
from glassgpt.io import write_json
from glassgpt.load import load_model, load_run
from glassgpt.model import GPT
from glassgpt.tokenizer import CharTokenizer
from glassgpt.trainer import Trainer


class Batches:
    def __init__(self):
        self.position = 0

    def next(self):
        g = torch.Generator().manual_seed(self.position)
        self.position += 1
        xy = torch.randint(0, 20, (2, 9), generator=g)
        return xy[:, :-1], xy[:, 1:]

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, s):
        self.position = s["position"]


def loss_fn(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())


def tiny_trainer(steps=3):
    torch.manual_seed(0)
    cfg = preset("baby", d_vocab=20, n_ctx=8, d_model=16, d_mlp=64, n_layers=1, n_heads=2, n_kv_heads=2)
    model = GPT(cfg)
    t = Trainer(model, loss_fn, Batches(), max_steps=10, lr=1e-2)
    for _ in range(steps):
        t.train_step()
    return cfg, model, t


def test_round_trip_is_exact(tmp_path):
    cfg, model, t = tiny_trainer()
    path = save_checkpoint(tmp_path, model, cfg, t.state_dict())
    assert path.name == checkpoint_name(3) == "step_0000003"
    ck = read_checkpoint(path)
    assert ck.step == 3 and ck.model_cfg == cfg and ck.state["data"] == {"position": 3}
    for k, v in model.state_dict().items():
        assert torch.equal(ck.weights[k], v)
    opt = t.optimizer.state_dict()
    for i, per_param in opt["state"].items():
        for key, value in per_param.items():
            assert torch.equal(ck.state["optimizer"]["state"][i][key], value)
    # a fresh model + trainer restored from it continues with the same losses
    cont = [t.train_step()["loss"] for _ in range(3)]
    model2 = GPT(ck.model_cfg)
    load_weights(model2, ck.weights, path)
    t2 = Trainer(model2, loss_fn, Batches(), max_steps=10, lr=1e-2)
    t2.load_state_dict(ck.state)
    assert [t2.train_step()["loss"] for _ in range(3)] == cont


def test_keeps_the_last_k_and_ignores_unfinished(tmp_path):
    cfg, model, t = tiny_trainer(1)
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, model, cfg, {**t.state_dict(), "step": step}, keep=2)
    (tmp_path / "checkpoints" / ".step_0000050.tmp").mkdir()  # a save cut short by a crash
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000030", "step_0000040"]
    assert latest_checkpoint(tmp_path).step == 40


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_weights_named_and_fallback_only_when_asked(tmp_path, damage):
    cfg, model, t = tiny_trainer(1)
    for step in (1, 2):
        save_checkpoint(tmp_path, model, cfg, {**t.state_dict(), "step": step})
    bad = tmp_path / "checkpoints" / "step_0000002" / "model.safetensors"
    data = bytearray(bad.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="step_0000002/model.safetensors.*--resume-latest-good"):
        latest_checkpoint(tmp_path)
    warnings = []
    assert latest_checkpoint(tmp_path, latest_good=True, warn=warnings.append).step == 1
    assert "step_0000002" in warnings[0]


def test_corrupt_state_json_named(tmp_path):
    cfg, model, t = tiny_trainer(1)
    path = save_checkpoint(tmp_path, model, cfg, t.state_dict())
    (path / "state.json").write_text('{"step": 1, "sha', encoding="utf-8")
    with pytest.raises(CheckpointError, match="state.json"):
        read_checkpoint(path)


def test_run_folder_loads_through_load_model(tmp_path):
    cfg, model, t = tiny_trainer(2)
    assert not is_run_folder(tmp_path)
    save_checkpoint(tmp_path, model, cfg, t.state_dict())
    write_json(tmp_path / "train_config.json", {})
    CharTokenizer([chr(ord("a") + i) for i in range(20)]).save(tmp_path)
    assert is_run_folder(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.kind == "run" and loaded.tokenizer.vocab_size == 20
    tokens = torch.randint(0, 20, (1, 8))
    model.eval()
    torch.testing.assert_close(loaded.model(tokens), model(tokens), rtol=0, atol=0)
    assert load_run(tmp_path).metadata["step"] == 2
