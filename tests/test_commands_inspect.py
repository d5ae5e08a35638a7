"""`glassgpt inspect …` on a small synthetic GGUF: the output, the figures, and one-line errors."""

import pytest
from gguf_synth import tiny_model, write_gguf

from glassgpt.cli import main
from glassgpt.inspect.attention import attention_patterns
from glassgpt.load import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return str(write_gguf(tmp_path_factory.mktemp("m") / "tiny.gguf", tiny_model()))


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_attention_lists_the_heaviest_key(gguf, tmp_path, capsys):
    code, out, err = _run(capsys, "inspect", "attention", "the tea", "--model", gguf, "--layer", "1",
                          "--head", "2", "--scores", "--out", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "attention_L1_H2.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "scores_L1_H2.png").is_file()
    loaded = load_model(gguf)
    ids = loaded.tokenizer.encode("the tea")
    p = attention_patterns(loaded.model, ids, layer=1)[0, 2]
    last = [line for line in out.splitlines() if line.strip().startswith(f"{len(ids) - 1} ")][0]
    j = int(p[-1].argmax())
    assert f"@{j} {float(p[-1, j]):.2f}" in last.split("→")[1].split(",")[0]


def test_attention_grid_and_lens(gguf, tmp_path, capsys):
    code, out, err = _run(capsys, "inspect", "attention", "in the", "--model", gguf, "--out", str(tmp_path))
    assert code == 0, err
    assert "layer 0 head 3" in out
    assert (tmp_path / "attention_L0.png").is_file()
    code, out, err = _run(capsys, "inspect", "lens", "in the", "--model", gguf, "--out", str(tmp_path))
    assert code == 0, err
    rows = [line.split()[0] for line in out.splitlines()[2:5]]
    assert rows == ["embed", "blocks.0", "blocks.1"]
    assert (tmp_path / "lens.png").is_file()


def test_heads_table(gguf, tmp_path, capsys):
    code, out, err = _run(capsys, "inspect", "heads", "--model", gguf, "--out", str(tmp_path))
    assert code == 0, err
    table = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert len(table) == 2 * 4  # every layer × head
    assert all(0 <= float(r[4]) <= 1 and 0 <= float(r[6]) <= 1 for r in table)
    assert "token 0 left out" in out and "uniform attention" in out  # G4's distance stands next to its controls
    assert "→ deep layers" in out or "→ the deep layers" in out  # and a verdict says what they show
    assert (tmp_path / "heads.png").is_file() and (tmp_path / "heads_L1.png").is_file()


def test_embed(gguf, tmp_path, capsys):
    code, out, err = _run(capsys, "inspect", "embed", "--model", gguf, "--nearest", "the", "--k", "3",
                          "--along", "a:an", "--project", "in", "the", "--align", "a:an", "t:the",
                          "--out", str(tmp_path))
    assert code == 0, err
    assert "nearest to 'the'" in out and "mean cosine between pairs" in out
    assert (tmp_path / "projection.png").is_file() and (tmp_path / "alignment.png").is_file()


@pytest.mark.parametrize("argv, message, exit_code", [  # 1: fails while running; 2: called wrongly
    (["attention", "the", "--layer", "5"], "layer 5 is out of range: this model has layers 0..1", 1),
    (["attention", "the", "--head", "4"], "head 4 is out of range: this model has heads 0..3", 1),
    (["heads", "--layer", "-1"], "layers 0..1", 1),
    (["lens", "the " * 200], "exceed the context window of 128 tokens", 1),
    (["lens", "the", "--position", "9"], "position 9 is out of range", 1),
    (["embed", "--align", "a:an"], "at least two pairs", 1),
    (["embed", "--along", "man"], "FROM:TO", 1),
    (["embed"], "say what to show", 2),
])
def test_bad_input_is_one_line(gguf, tmp_path, capsys, argv, message, exit_code):
    code, out, err = _run(capsys, "inspect", *argv, "--model", gguf, "--out", str(tmp_path))
    assert code == exit_code
    assert message in err and len(err.strip().splitlines()) == 1
