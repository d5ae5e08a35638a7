import json
import re
import shutil

import pytest
import torch

from glassgpt.cli import main
from glassgpt.seq2seq.checkpoint import load_run, read_trainer_state
from glassgpt.seq2seq.train import TaskBatches, fit, make_config, prepare, translate_batch, translator_setup
from glassgpt.trainer import make_adamw


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two barely trained runs (a few steps): enough to exercise the commands, not to be right."""
    root = tmp_path_factory.mktemp("seq2seq")
    assert main(["seq2seq", "train", "--out", str(root / "words"), "--steps", "3", "--d-model", "16",
                 "--no-eval"]) == 0
    assert main(["seq2seq", "train", "--task", "sorted", "--out", str(root / "sorted"), "--steps", "3",
                 "--d-model", "16", "--no-eval"]) == 0
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("glassgpt: error:")
    return err


def test_train_writes_a_run_folder(runs):
    for name in ("words", "sorted"):
        assert {p.name for p in (runs / name).iterdir()} == {"config.json", "model.safetensors", "log.json",
                                                              "trainer.json", "trainer.safetensors"}
    assert load_run(runs / "words").kind == "seq2seq" and load_run(runs / "sorted").kind == "pooling"


def test_translate_greedy_matches_python(runs, capsys):
    assert main(["seq2seq", "translate", "--run", str(runs / "words"), "1947", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    run = load_run(runs / "words")
    expected = translate_batch(run.model, run.task, ["1947", "5"])
    assert lines == [f"1947 → {expected[0]}", f"5 → {expected[1]}"]


def test_translate_beam_attention_and_plot(runs, capsys, tmp_path):
    png = tmp_path / "align.png"
    assert main(["seq2seq", "translate", "--run", str(runs / "words"), "42", "--beam", "3", "--show-attention",
                 "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    best = out[0].split(" → ", 1)[1]
    scores = [float(m.group(1)) for line in out if (m := re.match(r"\s+(-?\d+\.\d+)  ", line))]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    assert out[1].endswith(best)  # the first hypothesis is the answer
    reads = [line for line in out if " ← " in line]
    assert len(reads) == len(best) + 1  # one line per output character, and one for <eos>
    assert all(re.search(r"← '[42]' \(position [01]", line) for line in reads)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classify_shows_every_query(runs, capsys, tmp_path):
    png = tmp_path / "q.png"
    assert main(["seq2seq", "classify", "--run", str(runs / "sorted"), "1337", "--plot", str(png)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"1337: (sorted|not sorted) \(p=(0\.\d{3}|1\.000)\)", out[0])
    queries = [line for line in out if line.strip().startswith("query")]
    assert len(queries) == 4
    for line in queries:  # each query's weights over the 4 digits sum to 1
        weights = [float(w) for w in re.findall(r":(\d\.\d\d)", line)]
        assert len(weights) == 4 and abs(sum(weights) - 1) < 0.03
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["translate", "19x7?"], r"outside the task's vocabulary: '\?', 'x'"),
    (["translate", "123456"], r"6 characters; .* at most 4"),
    (["classify", "12"], r"needs a classifier"),
])
def test_bad_input_is_one_line(runs, capsys, argv, message):
    argv = [argv[0], "--run", str(runs / "words"), *argv[1:]]
    assert main(["seq2seq", *argv]) == 1  # fails while running
    assert re.search(message, one_error_line(capsys))


def test_bad_beam_is_a_usage_error(runs, capsys):
    assert main(["seq2seq", "translate", "--run", str(runs / "words"), "12", "--beam", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--beam: expected a positive integer, got '0'" in err


def test_bad_classifier_input_and_missing_runs(runs, capsys, tmp_path):
    assert main(["seq2seq", "classify", "--run", str(runs / "sorted"), "1234567890123"]) == 1
    assert "at most 12" in one_error_line(capsys)
    assert main(["seq2seq", "classify", "--run", str(runs / "sorted"), "12 3"]) == 1
    assert "' '" in one_error_line(capsys)
    assert main(["seq2seq", "translate", "--run", str(tmp_path / "none"), "12"]) == 1
    assert "not found" in one_error_line(capsys)
    assert main(["seq2seq", "train", "--task", "poetry", "--out", str(tmp_path / "x")]) == 2  # usage
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown task 'poetry'" in err


# ----------------------------------------------------------------------------- configfile flags and --resume

SMALL = ["--d-model=16", "--batch-size=8", "--no-eval", "--threads=1"]


def test_train_reads_a_toml_config_with_overrides_and_shows_it(tmp_path, capsys):
    config = tmp_path / "s.toml"
    config.write_text('task = "sorted"\nsteps = 50\nlr = 0.01\n', encoding="utf-8")
    assert main(["seq2seq", "train", "--config", str(config), "--steps", "70", "--out", str(tmp_path / "o"),
                 "--show-config"]) == 0
    shown = capsys.readouterr().out
    assert 'task = "sorted"' in shown and "steps = 70" in shown and "lr = 0.01" in shown  # the flag wins over the file
    assert "warmup = 50" in shown  # unset: the sorted task's default, not the translator's 100
    assert f'out_dir = "{tmp_path / "o"}"' in shown and not (tmp_path / "o").exists()  # shown, nothing written
    assert main(["seq2seq", "train", "--show-config"]) == 0
    assert "steps = 600" in capsys.readouterr().out  # the translator's default
    assert main(["seq2seq", "train", "--stpes=3"]) == 2
    assert "unknown config key 'stpes'" in capsys.readouterr().err


def _losses(run) -> list[float]:
    return json.loads((run / "log.json").read_text())["losses"]


def _weights(run) -> dict[str, torch.Tensor]:
    return load_run(run).model.state_dict()


def test_resume_continues_to_the_weights_and_losses_of_an_uninterrupted_run(tmp_path, capsys):
    """12 steps at once == 6 steps, then --resume to 12 (bit for bit). Controls: continuing from the same
    weights with a fresh optimizer, or with fresh batches, does not reach them."""
    schedule = ["--decay-steps=12", *SMALL]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["seq2seq", "train", "--out", str(full), "--steps=12", *schedule]) == 0
    assert main(["seq2seq", "train", "--out", str(cut), "--steps=6", "--checkpoint-every=3", *schedule]) == 0
    assert read_trainer_state(cut)["step"] == 6 and len(_losses(cut)) == 6
    at_6 = shutil.copytree(cut, tmp_path / "at-6")
    capsys.readouterr()
    assert main(["seq2seq", "train", "--resume", str(cut), "--steps=12", "--threads=1"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert _losses(cut) == _losses(full) and len(_losses(full)) == 12
    assert all(torch.equal(a, b) for a, b in zip(_weights(cut).values(), _weights(full).values()))
    assert read_trainer_state(cut)["step"] == 12

    def continue_without(part: str) -> list[float]:  # steps 7..12 from the step-6 weights, one part of the state new
        cfg = make_config(base=json.loads((at_6 / "config.json").read_text())["train"], overrides={"steps": 12})
        task, model_cfg = prepare(cfg)
        model, loss_fn, batches = translator_setup(task, model_cfg, cfg)
        model.load_state_dict(_weights(at_6))
        state = read_trainer_state(at_6)
        if part == "optimizer":
            state["optimizer"] = make_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2)).state_dict()
        elif part == "batches":
            state["data"] = TaskBatches(lambda g: None, cfg.seed).state_dict()  # a fresh run's first batches
        torch.set_num_threads(1)
        return fit(model, loss_fn, batches, cfg, state=state)

    assert continue_without("nothing") == _losses(full)[6:]  # the harness itself resumes exactly
    for part in ("optimizer", "batches"):
        assert continue_without(part) != _losses(full)[6:], part


def test_resume_extends_a_finished_run_and_refuses_to_repeat_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["seq2seq", "train", "--task=sorted", "--out", str(run), "--steps=3", *SMALL]) == 0
    before = (run / "model.safetensors").read_bytes()
    assert main(["seq2seq", "train", "--resume", str(run)]) == 1  # nothing left to do: say so, change nothing
    assert "already trained 3 steps" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before
    assert main(["seq2seq", "train", "--resume", str(run), "--steps=5", "--threads=1"]) == 0
    assert len(_losses(run)) == 5 and load_run(run).kind == "pooling"
