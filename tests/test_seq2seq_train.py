import pytest
import torch

from glassgpt.errors import CheckpointError
from glassgpt.seq2seq.checkpoint import load_run, save_run
from glassgpt.seq2seq.task import Task, TaskConfig
from glassgpt.seq2seq.train import (TrainConfig, char_accuracy, lr_at, train_translator, translate_batch,
                                    translator_config)


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


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))
