import pytest
import torch

from glassgpt.errors import CheckpointError
from glassgpt.seq2seq.checkpoint import load_run, save_run
from glassgpt.seq2seq.task import Task, TaskConfig
from glassgpt.seq2seq.train import (TaskBatches, TrainConfig, char_accuracy, train_translator, translate_batch,
                                    translator_config)
from glassgpt.trainer import NonFiniteLoss, next_token_loss


@pytest.fixture(scope="module")
def quick():
    """A few seconds of training: a tiny translator, digits → words."""
    task = Task(TaskConfig())
    cfg = translator_config(task, d_model=32, n_enc_layers=1, n_dec_layers=1)
    model, log = train_translator(task, cfg, TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup=10))
    return task, model, log


def test_quick_training_reads_well_above_chance(quick):
    task, model, log = quick
    assert sum(log["losses"][-10:]) < 0.6 * sum(log["losses"][:10])
    chance = 1 / (len(task.tgt_vocab) - 2)  # one of the characters or <eos>, uniformly
    assert char_accuracy(model, task, task.test_numbers[:200]) > 8 * chance  # held-out numbers only


def test_checkpoint_round_trip(quick, tmp_path):
    task, model, log = quick
    save_run(tmp_path / "run", model, task, TrainConfig().to_dict(), log)
    run = load_run(tmp_path / "run")
    assert run.kind == "seq2seq" and run.task.name == task.name
    src, tgt_in, _ = task.translation_batch([1947, 5, 300])
    assert torch.equal(model(src, tgt_in), run.model(src, tgt_in))
    assert translate_batch(run.model, run.task, ["1947", "12"]) == translate_batch(model, task, ["1947", "12"])
    assert not any(p.name.startswith(".") for p in (tmp_path / "run").iterdir())  # no temp files left


def test_broken_checkpoints_are_clear_errors(quick, tmp_path):
    task, model, log = quick
    folder = save_run(tmp_path / "run", model, task, {}, log)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_run(folder)
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path / "nothing")


def test_training_goes_through_the_trainer_nan_guard_and_resumable_batches(monkeypatch):
    task = Task(TaskConfig())
    cfg = translator_config(task, d_model=16, n_enc_layers=1, n_dec_layers=1)
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss = next_token_loss(model, batch)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr("glassgpt.seq2seq.train.next_token_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match="nan at step 3"):  # the Trainer's guard, before the weights change
        train_translator(task, cfg, TrainConfig(steps=5, batch_size=4, warmup=1))
    draw = lambda g: (torch.randint(0, 1000, (2,), generator=g),)  # noqa: E731
    a = TaskBatches(draw, seed=1)
    a.next()
    b = TaskBatches(draw, seed=2)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.next()[0], b.next()[0])  # the same examples after a resume
