"""Bad input, part 2: corpora, configs, prompts, paths, inspect, seq2seq and export, through the CLI.

Each case: a failure exit code, one error line naming the problem, no traceback, no hang, and every
file that was in the working folder before (a model, a run, a corpus) unchanged. A few cases run as
real subprocesses, so the exit path of `python -m glassgpt` is covered too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_input import TINY_TRAIN, Result, check_refusal, copy, edit_json, fingerprint, refuse

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path, monkeypatch, assets):
    """A working folder holding a corpus, a model and a run, all of which must come through untouched."""
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    for name in ("corpus", "gguf", "run", "translator", "classifier", "resumable"):
        copy(assets[name], tmp_path)
    return tmp_path


def train(folder, *extra) -> list:
    return ["train", f"--data={folder / 'corpus.txt'}", f"--out-dir={folder / 'new-run'}", "--max-steps=2",
            *TINY_TRAIN, *extra]


def after(_done, argv: list) -> list:
    """argv, once the call that spoils something (the first argument) has run."""
    return argv


# ----------------------------------------------------------------------------- corpora

def _write(name: str, data: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return make


def _empty_dir(folder: Path) -> Path:
    (folder / "texts").mkdir()
    (folder / "texts" / "image.png").write_bytes(b"\x89PNG\r\n")
    return folder / "texts"


CORPUS_CASES = {  # name: (make the source, extra flags, words)
    "empty-file": (_write("empty.txt", b""), [], ["empty"]),
    "only-whitespace": (_write("blank.txt", b" \n\n\t \n"), [], ["empty"]),
    "not-utf8": (_write("latin1.txt", "caf\xe9 cr\xe8me\n".encode("latin-1") * 50), [], ["latin1.txt", "UTF-8"]),
    "missing-file": (lambda folder: folder / "nowhere.txt", [], ["nowhere.txt"]),
    "folder-without-text": (_empty_dir, [], ["texts"]),
    "tokenizer-vocab-not-a-number": (lambda f: f / "corpus.txt", ["--tokenizer", "bpe:lots"], ["bpe:lots"]),
    "tokenizer-unknown": (lambda f: f / "corpus.txt", ["--tokenizer", "words"], ["unknown tokenizer 'words'"]),
    "val-fraction-above-one": (lambda f: f / "corpus.txt", ["--val-fraction", "1.5"], ["--val-fraction", "1.5"]),
    "val-fraction-nan": (lambda f: f / "corpus.txt", ["--val-fraction", "nan"], ["--val-fraction", "nan"]),
}


@pytest.mark.parametrize("case", list(CORPUS_CASES))
def test_data_prepare(case, folder):
    make, extra, words = CORPUS_CASES[case]
    source = make(folder)
    refuse(folder, ["data", "prepare", source, "--out", folder / "prepared", *extra], *words)


def test_corpus_too_small_for_a_batch(folder):
    (folder / "small.txt").write_text("to be or not to be\n" * 3)
    refuse(folder, ["train", f"--data={folder / 'small.txt'}", f"--out-dir={folder / 'r'}", *TINY_TRAIN],
           "fewer than one batch")


def test_prepared_folder_with_a_cut_token_file(folder):
    from bad_input import cli

    assert cli(["data", "prepare", folder / "corpus.txt", "--out", folder / "prepared"], folder).rc == 0
    data = (folder / "prepared" / "train.bin").read_bytes()
    (folder / "prepared" / "train.bin").write_bytes(data[: len(data) // 2])
    refuse(folder, train(folder)[:1] + [f"--data={folder / 'prepared'}", f"--out-dir={folder / 'r'}", *TINY_TRAIN],
           "train.bin", "manifest.json")


def test_prepared_folder_with_a_bad_manifest(folder):
    from bad_input import cli

    assert cli(["data", "prepare", folder / "corpus.txt", "--out", folder / "prepared"], folder).rc == 0
    edit_json(folder / "prepared" / "manifest.json", lambda m: m.update(dtype="complex1024"))
    refuse(folder, ["train", f"--data={folder / 'prepared'}", f"--out-dir={folder / 'r'}", *TINY_TRAIN],
           "manifest.json", "malformed")


# ----------------------------------------------------------------------------- training configs

CONFIG_CASES = {  # flags: words
    "--lr=nan": ["lr", "finite"],
    "--lr=inf": ["lr", "finite"],
    "--lr=0": ["lr", "positive"],
    "--min-lr=nan": ["min_lr", "finite"],
    "--min-lr=1": ["min_lr", "must not exceed lr"],
    "--beta1=1.5": ["beta1"],
    "--beta2=nan": ["beta2", "finite"],
    "--weight-decay=-inf": ["weight_decay", "finite"],
    "--grad-clip=inf": ["grad_clip", "finite"],
    "--max-seconds=nan": ["max_seconds", "finite"],
    "--dropout=1.5": ["dropout"],
    "--val-fraction=0": ["val_fraction"],
    "--sample-temperature=-1": ["sample_temperature"],
    "--max-steps=-1": ["max_steps", "positive"],
    "--batch-size=0": ["batch_size", "positive"],
    "--max-steps=ten": ["max_steps", "int"],
    "--n-heads=0": ["n_heads", "positive integer"],
    "--n-heads=3": ["d_model (16)", "n_heads (3)"],
    "--d-model=100000": ["d_model", "more than glassgpt allows"],
    "--n-ctx=2147483648": ["n_ctx", "more than glassgpt allows"],
    "--n-layers=1024 --d-model=32768 --n-heads=256": ["GiB", "available"],
    "--preset=enormous": ["preset", "enormous"],
    "--device=tpu": ["device", "tpu"],
    "--dtype=int8": ["dtype", "int8"],
    "--colour=blue": ["unknown config key", "colour"],
}


@pytest.mark.parametrize("flags", list(CONFIG_CASES))
def test_train_config(flags, folder):
    refuse(folder, train(folder, *flags.split()), *CONFIG_CASES[flags])
    assert not (folder / "new-run").exists()  # refused before the run folder was made


def test_config_file_not_toml(folder):
    (folder / "c.toml").write_text("lr = = 3\n")
    refuse(folder, train(folder, f"--config={folder / 'c.toml'}"), "c.toml", "not valid TOML")


def test_config_file_wrong_type(folder):
    (folder / "c.toml").write_text('lr = "fast"\n')
    refuse(folder, train(folder, f"--config={folder / 'c.toml'}"), "c.toml", "lr")


def test_config_file_nan(folder):
    (folder / "c.toml").write_text("min_lr = nan\n")
    refuse(folder, train(folder, f"--config={folder / 'c.toml'}"), "min_lr", "finite")


def test_config_file_missing(folder):
    refuse(folder, train(folder, f"--config={folder / 'nope.toml'}"), "config file not found")


# ----------------------------------------------------------------------------- prompts and sampling


def gen(folder, *extra, prompt="hello") -> list:
    return ["generate", "--model", folder / "tiny.gguf", "--max-new-tokens", "2", *extra, prompt]


PROMPT_CASES = {  # name: (flags, prompt, words)
    "longer-than-the-context": ([], "the " * 300, ["context window"]),
    "temperature-nan": (["--temperature", "nan"], "hi", ["--temperature", "nan"]),
    "temperature-inf": (["--temperature", "inf"], "hi", ["--temperature", "inf"]),
    "temperature-negative": (["--temperature", "-1"], "hi", ["temperature"]),
    "top-p-above-one": (["--top-p", "2"], "hi", ["top-p", "2"]),
    "top-k-zero": (["--top-k", "0"], "hi", ["top-k", "0"]),
    "min-p-nan": (["--min-p", "nan"], "hi", ["--min-p", "nan"]),
    "repetition-penalty-inf": (["--repetition-penalty", "inf"], "hi", ["repetition-penalty", "finite"]),
    "max-new-tokens-negative": (["--max-new-tokens", "-5"], "hi", ["max-new-tokens", "-5"]),
}


@pytest.mark.parametrize("case", list(PROMPT_CASES))
def test_generate(case, folder):
    flags, prompt, words = PROMPT_CASES[case]
    refuse(folder, gen(folder, *flags, prompt=prompt), *words)


def test_prompt_outside_a_character_vocabulary(folder):
    refuse(folder, ["sample", "--run", folder / "run", "--prompt", "Ωmega", "--max-new-tokens", "2"], "Ω")


# ----------------------------------------------------------------------------- paths

PATH_CASES = {  # name: (argv from the folder, words)
    "model-missing": (lambda f: gen(f)[:2] + [f / "no-such.gguf"] + gen(f)[3:], ["model not found", "no-such.gguf"]),
    "model-an-empty-folder": (lambda f: after((f / "empty").mkdir(), gen(f)[:2] + [f / "empty"] + gen(f)[3:]),
                              ["not a GGUF file, a Hugging Face model folder or a glassgpt run folder"]),
    "model-a-text-file": (lambda f: gen(f)[:2] + [f / "corpus.txt"] + gen(f)[3:], ["corpus.txt"]),
    "model-path-with-nul": (lambda f: gen(f)[:2] + ["bad\0name.gguf"] + gen(f)[3:], ["model not found"]),
    "model-name-too-long": (lambda f: gen(f)[:2] + ["x" * 300 + ".gguf"] + gen(f)[3:], ["x" * 20]),
    "sample-run-missing": (lambda f: ["sample", "--run", f / "gone"], ["gone"]),
    "train-out-dir-is-a-file": (lambda f: train(f)[:2] + [f"--out-dir={f / 'corpus.txt'}"] + train(f)[3:],
                                ["corpus.txt"]),
    "inspect-out-is-a-file": (lambda f: ["inspect", "attention", "hi", "--model", f / "tiny.gguf", "--out",
                                         f / "corpus.txt"], ["corpus.txt"]),
}


@pytest.mark.parametrize("case", list(PATH_CASES))
def test_paths(case, folder):
    make, words = PATH_CASES[case]
    refuse(folder, make(folder), *words)


# ----------------------------------------------------------------------------- inspect


def inspect(folder, what, *extra) -> list:
    return ["inspect", what, *extra, "--model", folder / "tiny.gguf", "--out", folder / "figures"]


INSPECT_CASES = {  # name: (argv after `inspect`, words)
    "attention-layer-too-big": (["attention", "hello", "--layer", "99"], ["layer 99"]),
    "attention-layer-negative": (["attention", "hello", "--layer", "-1"], ["layer -1"]),
    "attention-head-too-big": (["attention", "hello", "--head", "9"], ["head 9"]),
    "attention-top-zero": (["attention", "hello", "--top", "0"], ["--top", "at least 1"]),
    "attention-empty-text": (["attention", ""], ["no tokens"]),
    "lens-k-zero": (["lens", "hello", "--k", "0"], ["--k", "at least 1"]),
    "lens-k-above-vocabulary": (["lens", "hello", "--k", "100000"], ["--k", "vocabulary"]),
    "lens-position-out-of-range": (["lens", "hello", "--position", "999"], ["position 999"]),
    "lens-k-not-a-number": (["lens", "hello", "--k", "three"], ["--k", "three"]),
    "embed-nothing-asked": (["embed"], ["say what to show"]),
    "embed-k-zero": (["embed", "--nearest", "the", "--k", "0"], ["--k", "at least 1"]),
    "heads-layer-too-big": (["heads", "--layer", "99"], ["layer 99"]),
}


@pytest.mark.parametrize("case", list(INSPECT_CASES))
def test_inspect(case, folder):
    argv, words = INSPECT_CASES[case]
    refuse(folder, inspect(folder, argv[0], *argv[1:]), *words)


# ----------------------------------------------------------------------------- seq2seq


def translate(f: Path) -> list:
    return ["seq2seq", "translate", "12", "--run", f / "translator"]


def resume(run: Path, *extra) -> list:
    return ["seq2seq", "train", "--resume", run, "--threads=1", *extra]


SEQ2SEQ_CASES = {  # name: (argv from the folder, words)
    "translate-missing-run": (lambda f: ["seq2seq", "translate", "12", "--run", f / "gone"], ["gone"]),
    "translate-with-a-classifier": (lambda f: ["seq2seq", "translate", "12", "--run", f / "classifier"],
                                    ["classifier", "translator"]),
    "classify-with-a-translator": (lambda f: ["seq2seq", "classify", "1337", "--run", f / "translator"],
                                   ["translator", "classifier"]),
    "translate-letters": (lambda f: ["seq2seq", "translate", "12a", "--run", f / "translator"], ["'a'"]),
    "translate-too-long": (lambda f: ["seq2seq", "translate", "1" * 400, "--run", f / "translator"],
                           ["400 characters"]),
    "translate-beam-zero": (lambda f: ["seq2seq", "translate", "12", "--run", f / "translator", "--beam", "0"],
                            ["--beam"]),
    "train-unknown-task": (lambda f: ["seq2seq", "train", "--task", "poetry", "--out", f / "s"], ["poetry"]),
    "train-d-model-zero": (lambda f: ["seq2seq", "train", "--d-model", "0", "--out", f / "s"], ["--d-model"]),
    "train-lr-nan": (lambda f: ["seq2seq", "train", "--lr", "nan", "--out", f / "s"], ["--lr", "finite"]),
    "train-steps-zero": (lambda f: ["seq2seq", "train", "--steps", "0", "--out", f / "s"], ["steps"]),
    "resume-missing": (lambda f: resume(f / "gone"), ["gone", "no such folder"]),
    "resume-a-file": (lambda f: resume(f / "corpus.txt"), ["corpus.txt", "not a seq2seq run"]),
    "resume-a-training-run": (lambda f: resume(f / "run"), ["run", "not a seq2seq run"]),
    "resume-without-trainer-state": (lambda f: resume(f / "translator"), ["translator", "no trainer state"]),
    "resume-damaged-trainer-state": (lambda f: after((f / "resumable" / "trainer.safetensors").write_bytes(b"\0" * 9),
                                                     resume(f / "resumable", "--steps=4")),
                                     ["trainer.safetensors", "does not match"]),
    "resume-weights-of-another-step": (lambda f: after(copy(f / "translator" / "model.safetensors", f / "resumable"),
                                                       resume(f / "resumable", "--steps=4")),
                                       ["model.safetensors", "does not match"]),
    "resume-and-overwrite": (lambda f: resume(f / "resumable", "--steps=4", "--overwrite"), ["choose one"]),
    "resume-a-finished-run": (lambda f: resume(f / "resumable"), ["already trained 2 steps", "--steps"]),
    "resume-another-task": (lambda f: resume(f / "resumable", "--steps=4", "--task=sorted"), ["--task", "cannot change"]),
    "resume-elsewhere": (lambda f: resume(f / "resumable", "--steps=4", "--out", f / "new"), ["leave out --out"]),
    "run-config-vs-weights": (lambda f: after(edit_json(f / "translator" / "config.json",
                                                        lambda c: c["model"].update(d_model=32)), translate(f)),
                              ["model.safetensors", "do not fit"]),
    "run-config-unknown-kind": (lambda f: after(edit_json(f / "translator" / "config.json",
                                                          lambda c: c.update(kind="gan")), translate(f)),
                                ["kind='gan'"]),
    "run-weights-truncated": (lambda f: after((f / "translator" / "model.safetensors").write_bytes(b"\1\2\3"),
                                              translate(f)), ["model.safetensors"]),
}


@pytest.mark.parametrize("case", list(SEQ2SEQ_CASES))
def test_seq2seq(case, folder):
    make, words = SEQ2SEQ_CASES[case]
    refuse(folder, make(folder), *words)


# ----------------------------------------------------------------------------- export

EXPORT_CASES = {  # name: (argv from the folder, words)
    "into-a-file": (lambda f: ["export", f / "tiny.gguf", "--format", "hf", f / "corpus.txt"], ["corpus.txt"]),
    "missing-model": (lambda f: ["export", f / "gone.gguf", "--format", "hf", f / "out"], ["gone.gguf"]),
    "unknown-format": (lambda f: ["export", f / "tiny.gguf", "--format", "onnx", f / "out"], ["onnx"]),
    "a-damaged-model": (lambda f: after((f / "tiny.gguf").write_bytes(b"GGUF" + b"\0" * 12),
                                        ["export", f / "tiny.gguf", "--format", "safetensors", f / "out"]),
                        ["tiny.gguf"]),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export(case, folder):
    make, words = EXPORT_CASES[case]
    refuse(folder, make(folder), *words)


# ----------------------------------------------------------------------------- the real exit path


def run_subprocess(argv: list, cwd: Path, seconds: float = 120) -> Result:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLASSGPT_CACHE": str(cwd / "cache")}
    env.pop("GLASSGPT_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "glassgpt", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=seconds)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("case", ["gguf-100k-blocks", "resume-negative-step", "min-lr-nan"])
def test_subprocess(case, folder):
    from bad_input import rewrite_gguf

    if case == "gguf-100k-blocks":
        argv = gen(folder)[:2] + [rewrite_gguf(folder / "tiny.gguf", folder / "bad.gguf",
                                               llama__block_count=100_000)] + gen(folder)[3:]
        words = ["llama.block_count"]
    elif case == "resume-negative-step":
        state = sorted((folder / "run" / "checkpoints").iterdir())[-1] / "state.json"
        edit_json(state, lambda s: s.update(step=-5))
        argv, words = ["train", "--resume", folder / "run"], ["step", "--resume-latest-good"]
    else:
        argv, words = train(folder, "--min-lr=nan"), ["min_lr"]
    before = fingerprint(folder)
    check_refusal(run_subprocess(argv, folder), tuple(words), argv)
    assert {p: h for p, h in fingerprint(folder).items() if p in before} == before
