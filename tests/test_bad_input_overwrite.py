"""Bad input, part 3: nothing is overwritten. train, seq2seq train, export and data prepare write only into a
new or empty folder, or into one of their own kind when told (--overwrite; --force for data prepare).

Each refusal: a failure exit code, one error line naming the folder and what it refuses, no traceback,
every file in the working folder unchanged. Each kind also has its control: told to, it does replace.
"""

from __future__ import annotations

import json

import pytest
from bad_input import TINY_TRAIN, cli, copy, fingerprint, refuse


@pytest.fixture
def folder(tmp_path, monkeypatch, assets):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    for name in ("corpus", "gguf", "run", "translator", "gpt2_hf"):
        copy(assets[name], tmp_path)
    copy(assets["corpus"], tmp_path, "corpus.gguf")  # text that only looks like a model by its name
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("three years of work\n")
    return tmp_path


def train(folder, out, *extra) -> list:
    return ["train", f"--data={folder / 'corpus.txt'}", f"--out-dir={out}", "--max-steps=2", "--checkpoint-every=2",
            *TINY_TRAIN, *extra]


def seq2seq(out, *extra) -> list:
    return ["seq2seq", "train", "--steps", "1", "--batch-size", "4", "--d-model", "16", "--no-eval", "--out", out,
            *extra]


def export(folder, out, fmt="hf", *extra) -> list:
    return ["export", folder / "tiny.gguf", "--format", fmt, out, *extra]


def prepare(folder, out, *extra) -> list:
    return ["data", "prepare", folder / "corpus.txt", "--out", out, *extra]


# ----------------------------------------------------------------------------- refusals

CASES = {  # name: (argv from the folder, words)
    "train-over-a-run": (lambda f: train(f, f / "run"), ["refusing to overwrite", "run", "--overwrite",
                                                          "--resume"]),
    "train-into-other-files": (lambda f: train(f, f / "notes"), ["notes", "not a training run"]),
    "train-overwrite-other-files": (lambda f: train(f, f / "notes", "--overwrite"), ["notes", "not a training run"]),
    "train-into-a-seq2seq-run": (lambda f: train(f, f / "translator", "--overwrite"), ["not a training run"]),
    "train-into-a-file": (lambda f: train(f, f / "corpus.txt"), ["corpus.txt", "is a file"]),
    "train-overwrite-and-resume": (lambda f: ["train", "--resume", f / "run", "--overwrite"], ["choose one"]),
    "seq2seq-over-a-seq2seq-run": (lambda f: seq2seq(f / "translator"), ["translator", "already holds a seq2seq run",
                                                                         "--overwrite"]),
    "seq2seq-into-a-training-run": (lambda f: seq2seq(f / "run", "--overwrite"), ["not a seq2seq run"]),
    "seq2seq-into-other-files": (lambda f: seq2seq(f / "notes"), ["notes", "not a seq2seq run"]),
    "seq2seq-into-an-hf-export": (lambda f: seq2seq(f / "gpt2-hf", "--overwrite"), ["gpt2-hf", "not a seq2seq run"]),
    "export-over-an-export": (lambda f: export(f, f / "gpt2-hf"), ["gpt2-hf", "already holds a --format hf export",
                                                                   "--overwrite"]),
    "export-into-a-training-run": (lambda f: export(f, f / "run", "hf", "--overwrite"), ["not a --format hf export"]),
    "export-into-a-seq2seq-run": (lambda f: export(f, f / "translator", "safetensors", "--overwrite"),
                                  ["not a --format safetensors export"]),
    "export-into-other-files": (lambda f: export(f, f / "notes"), ["notes", "not a --format hf export"]),
    "export-hf-over-our-format": (lambda f: export(f, f / "gpt2-hf", "safetensors", "--overwrite"),
                                  ["not a --format safetensors export"]),
    "export-gguf-over-a-gguf": (lambda f: export(f, f / "tiny.gguf", "gguf"), ["tiny.gguf", "already is a GGUF file",
                                                                              "--overwrite"]),
    "export-gguf-over-a-text-file": (lambda f: export(f, f / "corpus.gguf", "gguf", "--overwrite"),
                                     ["corpus.gguf", "not a GGUF file"]),
    "prepare-into-other-files": (lambda f: prepare(f, f / "notes"), ["notes", "not a prepared corpus"]),
    "prepare-into-a-training-run": (lambda f: prepare(f, f / "run", "--force"), ["not a prepared corpus"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(case, folder):
    make, words = CASES[case]
    refuse(folder, make(folder), *words)


def test_prepare_over_another_corpus(folder):
    assert cli(prepare(folder, folder / "prepared"), folder).rc == 0
    (folder / "other.txt").write_text("a different text, for a different model\n" * 200)
    refuse(folder, ["data", "prepare", folder / "other.txt", "--out", folder / "prepared"],
           "prepared", "already holds a prepared corpus", "--force")


# ----------------------------------------------------------------------------- the controls: told to, they replace


def test_train_overwrite_replaces_the_run(folder):
    old = json.loads((folder / "run" / "run.json").read_text())["started"]
    assert sorted(p.name for p in (folder / "run" / "checkpoints").iterdir()) == ["step_0000001", "step_0000002"]
    result = cli(train(folder, folder / "run", "--overwrite", "--checkpoint-every=2"), folder)
    assert result.rc == 0, result.err
    assert sorted(p.name for p in (folder / "run" / "checkpoints").iterdir()) == ["step_0000002"]  # no stale step 1
    assert json.loads((folder / "run" / "run.json").read_text())["resumed"] is False
    assert (folder / "notes" / "thesis.txt").read_text() == "three years of work\n"
    assert old  # the old run.json was read before it went


def test_train_into_an_empty_folder(folder):
    (folder / "empty").mkdir()
    assert cli(train(folder, folder / "empty"), folder).rc == 0
    assert (folder / "empty" / "checkpoints" / "step_0000002").is_dir()


def test_seq2seq_overwrite_replaces_the_run(folder):
    before = fingerprint(folder / "translator")
    result = cli(seq2seq(folder / "translator", "--overwrite"), folder)
    assert result.rc == 0, result.err
    assert fingerprint(folder / "translator")["model.safetensors"] != before["model.safetensors"]


def test_export_overwrite_replaces_the_export(folder):
    before = fingerprint(folder / "gpt2-hf")
    result = cli(export(folder, folder / "gpt2-hf", "hf", "--overwrite"), folder)
    assert result.rc == 0, result.err
    assert json.loads((folder / "gpt2-hf" / "config.json").read_text())["model_type"] == "llama"  # the GGUF's
    assert fingerprint(folder / "gpt2-hf")["model.safetensors"] != before["model.safetensors"]


def test_prepare_again_reuses_and_force_replaces(folder):
    assert cli(prepare(folder, folder / "prepared"), folder).rc == 0
    first = fingerprint(folder / "prepared")
    assert cli(prepare(folder, folder / "prepared"), folder).rc == 0  # the same corpus: reused as it is
    assert fingerprint(folder / "prepared") == first
    (folder / "other.txt").write_text("a different text, for a different model\n" * 200)
    result = cli(["data", "prepare", folder / "other.txt", "--out", folder / "prepared", "--force"], folder)
    assert result.rc == 0, result.err
    assert fingerprint(folder / "prepared")["train.bin"] != first["train.bin"]
