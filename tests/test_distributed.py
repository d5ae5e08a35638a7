"""DistributedDataParallel on CPU (gloo): two processes = one process that saw the combined batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from glassgpt.config import preset
from glassgpt.data import BatchSampler
from glassgpt.io import load_tensors, save_tensors
from glassgpt.model import GPT
from glassgpt.train import next_token_loss
from glassgpt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CFG = dict(d_vocab=40, n_ctx=16, d_model=32, d_mlp=128, n_layers=2, n_heads=2, n_kv_heads=2)
STEPS, ACCUM, B = 1, 2, 2  # one step; per-rank micro-batch B, two micro-batches per step


def tokens():
    return np.random.default_rng(0).integers(0, 40, 4000).astype(np.uint16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_steps(model, rank, world, batch):
    sampler = BatchSampler(tokens(), 16, batch, seed=3, rank=rank, world_size=world)
    t = Trainer(model, next_token_loss, sampler, max_steps=STEPS, lr=1e-2, warmup_steps=0, grad_accum=ACCUM)
    return [t.train_step()["loss"] for _ in range(STEPS)]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = GPT(preset("baby", **CFG))
    losses = run_steps(DDP(model), rank, world, B)
    save_tensors(Path(out) / f"rank{rank}.safetensors", model.state_dict())
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(losses))
    dist.destroy_process_group()


@pytest.mark.slow  # two fresh processes import torch and start gloo: ~10 s, more on a busy machine
def test_two_processes_equal_one_with_the_combined_batch(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    single = GPT(preset("baby", **CFG))
    losses = run_steps(single, 0, 1, 2 * B)
    ranks = [load_tensors(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    for name, w in single.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name])  # the ranks stay in lock-step
        torch.testing.assert_close(ranks[0][name], w, rtol=1e-4, atol=1e-5)  # float sums in another order
    for r in range(2):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == pytest.approx(losses, rel=1e-6)


@pytest.mark.slow
def test_torchrun_glassgpt_train(tmp_path):
    """The same `glassgpt train` command under torchrun: rank 0 writes one run folder, with the single-process losses."""
    rng = np.random.default_rng(0)
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(rng.choice(list("abcdefgh \n"), 20000)), encoding="utf-8")
    common = [f"--data={corpus}", "--max-steps=6", "--checkpoint-every=3", "--eval-every=3", "--n-layers=1",
              "--d-model=32", "--n-heads=2", "--n-ctx=16", "--eval-batches=2", "--progress=false",
              "--sample-tokens=0", "--threads=1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLASSGPT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "glassgpt",
           "train", f"--out-dir={tmp_path / 'ddp'}", "--batch-size=4"] + common
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "glassgpt", "train", f"--out-dir={tmp_path / 'one'}",
                             "--batch-size=8"] + common, env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]

    def read(run):
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    ddp, one = read("ddp"), read("one")
    assert [r["step"] for r in ddp] == [r["step"] for r in one]  # written once, by rank 0
    for a, b in zip(ddp, one):
        for key in ("loss", "val_loss"):
            if key in a:
                assert a[key] == pytest.approx(b[key], rel=1e-5)
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step_0000003", "step_0000006"]
