"""`glassgpt train`: config parsing, the run folder, exact resume (also after SIGKILL), NaN stop, fine-tuning."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgpt import train as T
from glassgpt.checkpoint import latest_checkpoint, list_checkpoints
from glassgpt.cli import main
from glassgpt.errors import GlassError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-layers=1", "--d-model=32", "--n-heads=2", "--n-ctx=16", "--batch-size=4", "--eval-batches=2",
        "--progress=false", "--sample-tokens=0", "--warmup-steps=2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def corpus(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    words = ["the", "king", "queen", "shall", "speak", "my", "lord", "and", "to", "be", "not"]
    lines = [" ".join(rng.choice(words, size=rng.integers(3, 9))) + "." for _ in range(600)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def step_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run) if "loss" in r}


# ----------------------------------------------------------------------------- a run


def test_run_folder_holds_everything(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    assert main(["train", f"--data={corpus}", f"--out-dir={run}", "--max-steps=8", "--eval-every=4",
                 "--checkpoint-every=4", "--sample-tokens=40", "--lr=1e-2", "--preset=baby"] + TINY[:-2]) == 0
    out = capsys.readouterr().out
    assert "a sample from the trained model" in out
    names = {p.name for p in run.iterdir()}
    assert {"train_config.json", "char_tokenizer.json", "metrics.jsonl", "loss.png", "run.json", "checkpoints"} <= names
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((run / "run.json").read_text())
    assert info["version"]["glassgpt"] and info["model"]["d_model"] == 32
    assert (info["model"]["name"], info["model"]["positions"], info["model"]["norm"]) == ("baby", "learned", "layernorm")
    assert json.loads((run / "train_config.json").read_text())["max_steps"] == 8
    assert [p.name for p in list_checkpoints(run)] == ["step_0000004", "step_0000008"]
    val = [r["val_loss"] for r in metrics(run) if "val_loss" in r]
    assert len(val) == 3 and val[-1] < val[0]  # evaluated at 0, 4, 8; it learned something
    assert val[0] == pytest.approx(np.log(len(set(corpus.read_text()))), abs=0.3)  # untrained ≈ uniform
    assert sorted(step_losses(run)) == list(range(1, 9))
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--max-new-tokens=30", "--seed=1", "--prompt=the"]) == 0
    assert capsys.readouterr().out.startswith("the")


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_with_identical_losses(tmp_path, corpus, optimizer):
    common = [f"--data={corpus}", "--decay-steps=10", "--checkpoint-every=4", "--eval-every=0",
              f"--optimizer={optimizer}"] + TINY
    assert main(["train", f"--out-dir={tmp_path / 'full'}", "--max-steps=10"] + common) == 0
    assert main(["train", f"--out-dir={tmp_path / 'cut'}", "--max-steps=4"] + common) == 0  # stops at step 4
    assert main(["train", "--resume", str(tmp_path / "cut"), "--max-steps=10"]) == 0
    full, cut = step_losses(tmp_path / "full"), step_losses(tmp_path / "cut")
    assert sorted(cut) == list(range(1, 11))
    assert [cut[s] for s in range(1, 11)] == [full[s] for s in range(1, 11)]


def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    real = T.next_token_loss
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss = real(model, batch)
        return loss * float("nan") if calls["n"] == 7 else loss  # the 7th training batch

    monkeypatch.setattr(T, "next_token_loss", poisoned)
    run = tmp_path / "run"
    code = main(["train", f"--data={corpus}", f"--out-dir={run}", "--max-steps=20", "--checkpoint-every=3",
                 "--eval-every=0"] + TINY)
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "nan at step 7" in err and "step_0000006" in err and len(err.splitlines()) == 1
    assert latest_checkpoint(run).step == 6  # intact and readable


def test_too_small_corpus_via_cli(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("to be or not to be\n" * 3, encoding="utf-8")
    assert main(["train", f"--data={small}", f"--out-dir={tmp_path / 'r'}"] + TINY) == 1
    err = capsys.readouterr().err.strip()
    assert "fewer than one batch" in err and len(err.splitlines()) == 1


def test_resume_from_corrupt_checkpoint(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    assert main(["train", f"--data={corpus}", f"--out-dir={run}", "--max-steps=4", "--checkpoint-every=2",
                 "--eval-every=0"] + TINY) == 0
    bad = run / "checkpoints" / "step_0000004" / "optimizer.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-steps=6"]) == 1
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and len(err.splitlines()) == 1
    assert main(["train", "--resume", str(run), "--max-steps=6", "--resume-latest-good"]) == 0
    assert "resuming" in capsys.readouterr().out and "step_0000002" in str(list_checkpoints(run))
    assert latest_checkpoint(run).step == 6


def test_track_qk_is_wired(tmp_path, corpus):
    run = tmp_path / "run"
    assert main(["train", f"--data={corpus}", f"--out-dir={run}", "--max-steps=2", "--track-qk=2",
                 "--eval-every=0"] + TINY) == 0
    assert (run / "qk.jsonl").is_file()


def test_track_qk_without_the_module(tmp_path, corpus, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "glassgpt.inspect.qk", None)  # as if it were not installed
    assert main(["train", f"--data={corpus}", f"--out-dir={tmp_path / 'r'}", "--max-steps=2", "--track-qk=1"]
                + TINY) == 1
    err = capsys.readouterr().err.strip()
    assert "--track-qk" in err and len(err.splitlines()) == 1


def test_init_from_hf_gpt2_folder(tmp_path, corpus):
    transformers = pytest.importorskip("transformers")
    from glassgpt.tokenizer import BPETokenizer

    tok = BPETokenizer.train([corpus.read_text()], vocab_size=300)
    folder = tmp_path / "gpt2-tiny"
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=2,
                                                              n_head=2))
    hf.save_pretrained(folder, safe_serialization=True)
    tok.save(folder)
    run = tmp_path / "ft"
    assert main(["train", f"--data={corpus}", f"--init-from={folder}", f"--out-dir={run}", "--max-steps=6",
                 "--eval-every=6", "--batch-size=4", "--n-ctx=16", "--eval-batches=2", "--progress=false",
                 "--sample-tokens=0", "--lr=3e-3"]) == 0
    # oracle: the validation loss before any step is Hugging Face's loss on the same windows
    from glassgpt.data import eval_starts, open_data, windows

    data = open_data(run / "data")
    x, y = windows(data.val, eval_starts(len(data.val), 16, 8), 16)
    hf.eval()
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten()).item()
    val = [r["val_loss"] for r in metrics(run) if "val_loss" in r]
    assert val[0] == pytest.approx(ref, abs=1e-4)
    assert val[-1] < val[0]
    assert (run / "tokenizer.json").is_file()


KILL_AT_STEP_10 = """
import os, signal, sys
from glassgpt import train
from glassgpt.cli import main

class KillAfterCheckpoint:  # SIGKILL, the way a crash or the OOM killer ends a run: no cleanup at all
    def on_checkpoint(self, trainer, step, path):
        if step >= 10:
            os.kill(os.getpid(), signal.SIGKILL)

make_callbacks = train.make_callbacks
train.make_callbacks = lambda run: make_callbacks(run) + [KillAfterCheckpoint()]
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, corpus):
    common = [f"--data={corpus}", "--checkpoint-every=5", "--eval-every=0", "--decay-steps=30", "--threads=1"] + TINY
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = tmp_path / "killed"
    # The child kills itself right after its step-10 checkpoint (polling from here would race a 2 ms step).
    proc = subprocess.run([sys.executable, "-c", KILL_AT_STEP_10, "train", f"--out-dir={killed}", "--max-steps=100000"]
                          + common, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (killed / "checkpoints" / "step_0000010").is_dir()
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--resume", str(killed), "--max-steps=30"]) == 0
        assert main(["train", f"--out-dir={tmp_path / 'full'}", "--max-steps=30"] + common) == 0
    finally:
        torch.set_num_threads(threads)
    full, resumed = step_losses(tmp_path / "full"), step_losses(killed)
    assert sorted(resumed) == list(range(1, 31))
    assert [resumed[s] for s in range(1, 31)] == [full[s] for s in range(1, 31)]


def _three_steps(tmp_path, corpus, name, *extra) -> dict[int, float]:
    assert main(["train", f"--data={corpus}", f"--out-dir={tmp_path / name}", "--max-steps=3", "--eval-every=0",
                 "--checkpoint-every=0"] + TINY + list(extra)) == 0
    return step_losses(tmp_path / name)


def test_bfloat16_autocast_tracks_float32(tmp_path, corpus):
    fp32 = _three_steps(tmp_path, corpus, "fp32")
    bf16 = _three_steps(tmp_path, corpus, "bf16", "--dtype=bfloat16")
    assert fp32 != bf16  # autocast really ran in bfloat16 ...
    assert all(abs(fp32[s] - bf16[s]) < 0.05 for s in fp32)  # ... and computed the same thing, roughly


def _val_losses(tmp_path, corpus, name, *extra) -> list[float]:
    assert main(["train", f"--data={corpus}", f"--out-dir={tmp_path / name}", "--max-steps=60", "--eval-every=60",
                 "--checkpoint-every=0", "--lr=1e-2"] + TINY + list(extra)) == 0
    return [r["val_loss"] for r in metrics(tmp_path / name) if "val_loss" in r]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_bfloat16_trains_like_float32(tmp_path, corpus, optimizer):
    """60 steps in bf16 autocast reach what fp32 reaches (and far below the untrained model's loss)."""
    fp32 = _val_losses(tmp_path, corpus, "fp32", f"--optimizer={optimizer}")
    bf16 = _val_losses(tmp_path, corpus, "bf16", f"--optimizer={optimizer}", "--dtype=bfloat16")
    assert fp32[0] == pytest.approx(bf16[0], abs=0.02) and fp32[0] > 2.5  # untrained: about ln(vocabulary)
    assert bf16[-1] < 2.0 and fp32[-1] < 2.0  # what 60 steps reach; the untrained model is far above it
    assert abs(bf16[-1] - fp32[-1]) < 0.05


@pytest.mark.slow
def test_compile_matches_eager(tmp_path, corpus):
    eager = _three_steps(tmp_path, corpus, "eager")
    compiled = _three_steps(tmp_path, corpus, "compiled", "--compile")
    assert all(abs(eager[s] - compiled[s]) < 1e-4 for s in eager)
