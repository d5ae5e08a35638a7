"""What every bad-input case asserts, and the small models and runs they spoil (not a test module).

refuse(folder, argv, *words) runs `glassgpt ARGV` in-process with the folder as working directory and checks:
  - the exit code is a failure (1: it failed while running, 2: it was called wrongly);
  - stderr ends in one line `...error: ...` that names the problem (every word in `words`, any case);
  - no traceback anywhere in stdout or stderr;
  - it returned within `seconds` (a SIGALRM raises Hang, which the CLI cannot swallow);
  - every file that was in the folder before is still there, byte for byte (sha256).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAILED = (1, 2)  # 1: failed while running, 2: a usage error (argparse, or the pre-#12 CLI's one code)


class Hang(BaseException):
    """The command ran past its time: a BaseException, so `except Exception` in the CLI lets it through."""


@dataclass
class Result:
    rc: int
    out: str
    err: str


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def cli(argv: list[str], cwd: Path, seconds: float = 60, stdin: str = "") -> Result:
    """glassgpt.cli.main(argv) in this process, in cwd, with stdout/stderr captured and a time limit."""
    from glassgpt.cli import main

    def on_alarm(signum, frame):
        raise Hang(f"glassgpt {' '.join(argv)} ran past {seconds} s")

    out, err = io.StringIO(), io.StringIO()
    old_dir, old_stdin = os.getcwd(), sys.stdin
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        os.chdir(cwd)
        sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code if isinstance(e.code, int) else 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        sys.stdin = old_stdin
        os.chdir(old_dir)
    return Result(rc, out.getvalue(), err.getvalue())


def check_refusal(result: Result, words: tuple[str, ...], argv) -> str:
    """The asserts shared by the in-process and the subprocess cases; returns the error line."""
    both = result.out + result.err
    assert "Traceback" not in both, f"traceback from {argv}:\n{both[-2000:]}"
    assert result.rc in FAILED, f"{argv} exited {result.rc}, not a failure:\n{both[-1000:]}"
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert lines, f"{argv} failed silently"
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1 and lines[-1] == errors[0], f"{argv}: not one error line:\n{result.err[-1000:]}"
    line = errors[0]
    for word in words:
        assert word.lower() in line.lower(), f"{argv}: {word!r} not in {line!r}"
    return line


def refuse(folder: Path, argv: list, *words: str, seconds: float = 60, stdin: str = "") -> str:
    """Run argv in folder, assert a clean refusal naming `words`, and that nothing in folder changed."""
    before = fingerprint(folder)
    result = cli(argv, folder, seconds, stdin)
    line = check_refusal(result, words, argv)
    after = fingerprint(folder)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"{argv} changed or removed {changed[:5]}"
    return line


# ----------------------------------------------------------------------------- what the cases spoil


def corpus_text(lines: int = 600) -> str:
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "shall", "speak", "my", "lord", "and", "to", "be", "not"]
    return "\n".join(" ".join(rng.choice(words, size=rng.integers(3, 9))) + "." for _ in range(lines)) + "\n"


TINY_TRAIN = ["--n-layers=1", "--d-model=16", "--n-heads=2", "--n-ctx=16", "--batch-size=4", "--eval-batches=1",
              "--progress=false", "--sample-tokens=0", "--warmup-steps=1", "--eval-every=0", "--threads=1"]


def make_assets(root: Path) -> dict[str, Path]:
    """A tiny GGUF, a Hugging Face GPT-2 folder, a trained run (2 checkpoints), a translator and a classifier."""
    root.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("GLASSGPT_CACHE")
    os.environ["GLASSGPT_CACHE"] = str(root / "cache")  # prepared corpora and converted weights stay in here
    try:
        return _make_assets(root)
    finally:
        if old is None:
            os.environ.pop("GLASSGPT_CACHE")
        else:
            os.environ["GLASSGPT_CACHE"] = old


def _make_assets(root: Path) -> dict[str, Path]:
    import gguf_synth as gs
    import torch

    from glassgpt.config import ModelConfig
    from glassgpt.convert.export import export_hf
    from glassgpt.load import Loaded, load_model
    from glassgpt.model import GPT

    assets = {"gguf": gs.write_gguf(root / "tiny.gguf", gs.tiny_model())}

    loaded = load_model(assets["gguf"])
    torch.manual_seed(0)
    gpt2 = GPT(ModelConfig(d_vocab=loaded.model.cfg.d_vocab, n_ctx=32, d_model=32, n_layers=2, n_heads=2))
    export_hf(Loaded(gpt2, loaded.tokenizer, "", "run"), root / "gpt2-hf")
    assets["gpt2_hf"] = root / "gpt2-hf"
    export_hf(loaded, root / "llama-hf")
    assets["llama_hf"] = root / "llama-hf"

    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    assets["corpus"] = corpus
    run = root / "run"
    result = cli(["train", f"--data={corpus}", f"--out-dir={run}", "--max-steps=2", "--checkpoint-every=1"]
                 + TINY_TRAIN, root, seconds=300)
    assert result.rc == 0, result.err
    assets["run"] = run

    from glassgpt.seq2seq import train as S
    from glassgpt.seq2seq.checkpoint import save_run
    from glassgpt.seq2seq.model import EncoderDecoder
    from glassgpt.seq2seq.pooling import PoolingClassifier
    from glassgpt.seq2seq.task import Task, TaskConfig

    for name, task_name in (("translator", "digits-to-words"), ("classifier", "sorted")):
        task = Task(TaskConfig(name=task_name))
        if task.kind == "translation":
            model = EncoderDecoder(S.translator_config(task, d_model=16), pad_id=task.src_vocab.pad_id)
        else:
            model = PoolingClassifier(S.classifier_config(task, d_model=16), pad_id=task.src_vocab.pad_id)
        assets[name] = save_run(root / name, model.eval(), task, S.TrainConfig(task=task_name).to_dict(),
                                {"train_seconds": 0.0})
    result = cli(["seq2seq", "train", "--out", root / "resumable", "--steps=2", "--d-model=16", "--batch-size=4",
                  "--no-eval", "--threads=1"], root, seconds=300)  # a run with its trainer state, for --resume
    assert result.rc == 0, result.err
    assets["resumable"] = root / "resumable"
    return assets


def copy(asset: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or asset.name)
    if asset.is_dir():
        shutil.copytree(asset, target)
    else:
        shutil.copy2(asset, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rewrite_gguf(source: Path, target: Path, drop: tuple[str, ...] = (), **changes) -> Path:
    """A copy of a GGUF with metadata values changed (key=value; dots as '__') or keys dropped."""
    import gguf

    from glassgpt.convert.gguf import read_gguf

    reader = read_gguf(source)
    changes = {k.replace("__", "."): v for k, v in changes.items()}
    w = gguf.GGUFWriter(str(target), reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop or key in changes:
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(key, field.contents())
        else:
            w.add_key_value(key, field.contents(), field.types[0])
    for key, value in changes.items():
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, list):
            w.add_array(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif value < 0:
            w.add_int64(key, value)
        else:
            w.add_uint64(key, value)
    for t in reader.tensors:
        w.add_tensor(t.name, np.asarray(t.data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return target
