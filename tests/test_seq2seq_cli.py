import re

import pytest

from glassgpt.cli import main
from glassgpt.seq2seq.checkpoint import load_run
from glassgpt.seq2seq.train import translate_batch


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
        assert {p.name for p in (runs / name).iterdir()} == {"config.json", "model.safetensors", "log.json"}
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
