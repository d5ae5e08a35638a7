"""Training speed: ms/step, tokens/s and model-FLOPs utilisation (MFU), fp32 against bf16, eager and compiled.

CPU: Tiny Shakespeare, character level, three cases —
    baby      the `baby` preset (4 layers, 4 heads, d 128, context 64), batch 12: nanoGPT's CPU recipe
    speedrun  glassgpt/configs/speedrun.toml (4/4/192, context 128), batch 24: benchmarks/speedrun.py's model
    small     the `small` preset (6/6/384, context 256), batch 64
each in fp32 and with bf16 autocast (matmuls in bf16, weights, gradients and AdamW in fp32), eager and (baby,
speedrun) with torch.compile (compiling `small` was 0.89x eager here, and takes minutes), all with AdamW;
the speedrun case also with its own optimizer (Muon on the blocks' matrices, AdamW on the rest), bf16 eager.
The variants of one case are timed round-robin (a few steps each, several rounds, the median kept), so a busy machine slows them all alike and their ratios hold. MFU is against the matmul peak of the
row's own precision, both measured in the same run (n×n products, the best of n = 512 and 1024).
CUDA: the `gpt2` preset (124M, context 1024) with bf16 autocast, torch.compile and flash attention
(scaled_dot_product_attention), against the GPU's measured bf16 matmul peak.

FLOPs per token follow nanoGPT's estimate (PaLM appendix B): 6·N + 12·n_layers·n_heads·d_head·T, with N the
parameters without the position table. The step timed is the whole Trainer step: forward, backward,
gradient clipping and AdamW. The JSON records the CPU's flags and torch's CPU capability: whether bf16 pays
depends on them (AVX512-BF16 or AMX).

    .venv/bin/python benchmarks/train.py                    # writes benchmarks/results/train-<device>.json
    .venv/bin/python benchmarks/train.py --quick            # fewer steps
    .venv/bin/python benchmarks/train.py --cases speedrun --no-compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from matvec import cpu_info

from glassgpt.config import preset
from glassgpt.data import BatchSampler, tinyshakespeare_text
from glassgpt.model import GPT
from glassgpt.train import compile_blocks, make_config, make_optimizer, next_token_loss
from glassgpt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # name: autocast dtype


def cpu_case(name: str, vocab: int):
    """(ModelConfig, batch) of a CPU case."""
    if name == "speedrun":
        cfg = make_config("speedrun")
        return cfg.model_config(vocab), cfg.batch_size
    batch = {"baby": 12, "small": 64}[name]
    return preset(name, d_vocab=vocab), batch


def matmul_peak(dtype=torch.float32, device="cpu", n=1024, seconds=1.0) -> float:
    """The best GFLOP/s of n×n @ n×n matmuls (this machine, these threads, right now)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(3):
            a @ b
        _sync(device)
        best = max(best, 3 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def cpu_peaks(rounds: int = 3) -> dict[str, float]:
    """fp32 and bf16 matmul peaks, measured in alternation (the best of each over sizes and rounds)."""
    best = {"fp32": 0.0, "bf16": 0.0}
    for _ in range(rounds):
        for n in (512, 1024):
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                best[name] = max(best[name], matmul_peak(dtype, n=n, seconds=0.5))
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_token(model: GPT, T: int) -> float:
    cfg = model.cfg
    N = model.num_params() - (model.embed.W_pos.numel() if model.embed.W_pos is not None else 0)
    return 6 * N + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * T


def char_tokens() -> tuple[np.ndarray, int]:
    text = tinyshakespeare_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    return ids[: int(0.9 * len(ids))], len(chars)


class Variant:
    """One (case, precision, compile) trainer, ready to be stepped and timed."""

    def __init__(self, case: str, model_cfg, batch: int, precision: str, compile: bool, device: str,
                 tokens: np.ndarray, optimizer: str = "adamw"):
        torch.manual_seed(0)
        self.case, self.batch, self.precision, self.compile = case, batch, precision, compile
        self.optimizer = optimizer
        self.model = GPT(model_cfg).to(device)
        self.T = model_cfg.n_ctx
        if compile:
            compile_blocks(self.model)
        sampler = BatchSampler(tokens, self.T, batch, seed=0, device=device)
        opt = make_optimizer(self.model, make_config("speedrun", {"optimizer": optimizer}))
        self.trainer = Trainer(self.model, next_token_loss, sampler, max_steps=10 ** 9, lr=3e-3, warmup_steps=10,
                               autocast_dtype=PRECISIONS[precision], optimizer=opt)
        self.times: list[float] = []
        self.device = device

    def step(self, timed: bool = True) -> None:
        _sync(self.device)
        t0 = time.perf_counter()
        self.trainer.train_step()  # ends with loss.item(): the step is finished when it returns
        if timed:
            self.times.append(time.perf_counter() - t0)

    def row(self) -> dict:
        dt = float(np.median(self.times))
        tps = self.batch * self.T / dt
        return {"case": self.case, "preset": self.model.cfg.name, "d_model": self.model.cfg.d_model,
                "n_layers": self.model.cfg.n_layers, "batch": self.batch, "n_ctx": self.T,
                "precision": self.precision, "compile": self.compile, "optimizer": self.optimizer, "params": self.model.num_params(),
                "steps_timed": len(self.times), "warmup_s": getattr(self, "warmup_s", 0.0), "ms_per_step": dt * 1000, "tokens_per_s": tps,
                "achieved_gflops": flops_per_token(self.model, self.T) * tps / 1e9}


def measure_case(case: str, model_cfg, batch: int, compiles: list[bool], rounds: int, per_round: int,
                 warmup: int, tokens: np.ndarray) -> list[dict]:
    """Every precision × compile variant of one case, timed round-robin; their rows."""
    variants = [Variant(case, model_cfg, batch, p, c, "cpu", tokens) for c in compiles for p in PRECISIONS]
    if case == "speedrun":
        variants.append(Variant(case, model_cfg, batch, "bf16", False, "cpu", tokens, make_config("speedrun").optimizer))
    for v in variants:
        t0 = time.perf_counter()
        for _ in range(warmup + 3 * v.compile):  # a compiled variant compiles during its first steps
            v.step(timed=False)
        v.warmup_s = time.perf_counter() - t0  # with compile: mostly the compilation
    for _ in range(rounds):
        for v in variants:
            for _ in range(per_round):
                v.step()
    rows = [v.row() for v in variants]
    eager_fp32 = rows[0]["ms_per_step"]
    for r in rows:
        r["speedup_vs_fp32_eager"] = eager_fp32 / r["ms_per_step"]
        print(f"  {case} {r['precision']} compile={r['compile']} {r['optimizer']}: {r['ms_per_step']:.1f} ms/step "
              f"({r['speedup_vs_fp32_eager']:.2f}× fp32 eager; warmup {r['warmup_s']:.1f} s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="baby,speedrun,small")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    load_before = os.getloadavg()[0]  # other work on the machine lowers every number here
    rows = []
    if device == "cpu":
        torch.set_num_threads(args.threads)
        tokens, vocab = char_tokens()
        peaks = cpu_peaks()
        for case in args.cases.split(","):
            if case not in ("baby", "speedrun", "small"):
                raise SystemExit(f"unknown case {case!r}; choose from baby, speedrun, small")
            model_cfg, batch = cpu_case(case, vocab)
            big = case == "small"
            rounds, per_round = (2 if big else 4, 1 if big else 3)
            if args.quick:
                rounds = max(1, rounds // 2)
            compiles = [False] if args.no_compile or big else [False, True]
            rows += measure_case(case, model_cfg, batch, compiles,
                                 rounds, per_round, 1 if big else 5, tokens)
        after = cpu_peaks(rounds=1)
        peaks = {k: max(v, after[k]) for k, v in peaks.items()}
        hardware = cpu_info()
        hardware["threads"] = args.threads
        for r in rows:
            r["mfu"] = r["achieved_gflops"] / peaks[r["precision"]]
            r["mfu_vs_fp32_peak"] = r["achieved_gflops"] / peaks["fp32"]
        title = (f"{hardware.get('model', hardware['machine'])}, {args.threads} threads, torch {torch.__version__} "
                 f"({hardware['capability']}); matmul peaks measured in this run: fp32 {peaks['fp32']:.0f}, "
                 f"bf16 {peaks['bf16']:.0f} GFLOP/s (bf16/fp32 {peaks['bf16'] / peaks['fp32']:.2f}×)")
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        tokens = np.random.default_rng(0).integers(0, 50257, 5_000_000).astype(np.uint32)
        peaks = {"bf16": matmul_peak(torch.bfloat16, "cuda", n=8192)}
        v = Variant("gpt2", preset("gpt2"), 16, "bf16", True, "cuda", tokens)  # AdamW, fused
        for _ in range(5):
            v.step(timed=False)
        for _ in range(20 // (2 if args.quick else 1)):
            v.step()
        rows.append(v.row())
        rows[-1]["mfu"] = rows[-1]["achieved_gflops"] / peaks["bf16"]
        hardware = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
        title = f"{hardware['gpu']}; bf16 matmul peak {peaks['bf16']:.0f} GFLOP/s (measured in this run)"
    load_after = os.getloadavg()[0]
    print(f"\n{title}; load average {load_before:.1f} → {load_after:.1f}\n")
    print("| case | batch × context | precision | compile | optimizer | ms/step | tokens/s | × fp32 eager | GFLOP/s | "
          "MFU (own peak) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} ({r['n_layers']}/{r['d_model']}) | {r['batch']} × {r['n_ctx']} | {r['precision']} | "
              f"{'yes' if r['compile'] else 'no'} | {r['optimizer']} | {r['ms_per_step']:,.1f} | {r['tokens_per_s']:,.0f} | "
              f"{r.get('speedup_vs_fp32_eager', 1.0):.2f} | {r['achieved_gflops']:.1f} | {r['mfu']:.0%} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train-{device}.json"
    out.write_text(json.dumps({"hardware": hardware, "peak_gflops": peaks,
                               "load_average_1min": [load_before, load_after], "torch": torch.__version__,
                               "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
