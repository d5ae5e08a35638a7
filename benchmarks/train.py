"""Training speed: ms/step, tokens/s and model-FLOPs utilisation (MFU) against this machine's matmul peak.

CPU (2 threads): Tiny Shakespeare, character level, the `baby` preset (4 layers, 4 heads, d 128, context 64,
batch 12) and the `small` preset (6/6/384, context 256, batch 64), each eager and with torch.compile.
CUDA: the `gpt2` preset (124M, context 1024) with bf16 autocast, torch.compile and flash attention
(scaled_dot_product_attention), against the GPU's measured bf16 matmul peak.

FLOPs per token follow nanoGPT's estimate (PaLM appendix B): 6·N + 12·n_layers·n_heads·d_head·T, with N the
parameters without the position table. The step timed is the whole Trainer step: forward, backward,
gradient clipping and AdamW.

    .venv/bin/python benchmarks/train.py            # writes benchmarks/results/train-<device>.json
    .venv/bin/python benchmarks/train.py --quick    # fewer steps
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from glassgpt.config import preset
from glassgpt.data import BatchSampler, tinyshakespeare_text
from glassgpt.model import GPT
from glassgpt.train import compile_blocks, next_token_loss
from glassgpt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CPU_CASES = {  # name: (preset, batch)
    "baby": ("baby", 12),
    "small": ("small", 64),
}


def matmul_peak(dtype=torch.float32, device="cpu", n=1024, seconds=1.5) -> float:
    """The best GFLOP/s of n×n @ n×n matmuls (this machine, these threads, right now)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        _sync(device)
        best = max(best, 5 * 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
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


def measure(name: str, preset_name: str, batch: int, compile: bool, steps: int, warmup: int, device: str,
            dtype: torch.dtype | None, tokens: np.ndarray, vocab: int) -> dict:
    torch.manual_seed(0)
    model = GPT(preset(preset_name, d_vocab=vocab)).to(device)
    T = model.cfg.n_ctx
    if compile:
        compile_blocks(model)
    sampler = BatchSampler(tokens, T, batch, seed=0, device=device)
    trainer = Trainer(model, next_token_loss, sampler, max_steps=10 ** 9, lr=1e-3, warmup_steps=10,
                      autocast_dtype=dtype)
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        trainer.train_step()  # ends with loss.item(): the step is finished when it returns
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    tps = batch * T / dt
    return {"case": name, "preset": preset_name, "batch": batch, "n_ctx": T, "compile": compile,
            "params": model.num_params(), "ms_per_step": dt * 1000, "tokens_per_s": tps,
            "achieved_gflops": flops_per_token(model, T) * tps / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="baby,small")
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    load_before = (os.getloadavg()[0],)  # other work on the machine lowers every number here
    rows = []
    if device == "cpu":
        torch.set_num_threads(args.threads)
        tokens, vocab = char_tokens()
        peak = matmul_peak()
        for name in args.cases.split(","):
            preset_name, batch = CPU_CASES[name]
            steps = {"baby": 60, "small": 6}[name] // (3 if args.quick else 1)
            warmup = {"baby": 10, "small": 2}[name]
            for compile in ([False] if args.no_compile else [False, True]):
                rows.append(measure(name, preset_name, batch, compile, max(steps, 2), warmup + 3 * compile, device,
                                    None, tokens, vocab))
                print(f"  {rows[-1]['case']} compile={compile}: {rows[-1]['ms_per_step']:.1f} ms/step", flush=True)
        peak_after = matmul_peak()
        peak = max(peak, peak_after)
        hardware = f"{platform.processor() or platform.machine()}, {args.threads} threads"
        peak_name = "fp32 matmul peak"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        tokens = np.random.default_rng(0).integers(0, 50257, 5_000_000).astype(np.uint32)
        peak = matmul_peak(torch.bfloat16, "cuda", n=8192)
        rows.append(measure("gpt2", "gpt2", 16, True, 20 // (2 if args.quick else 1), 5, "cuda", torch.bfloat16,
                            tokens, 50257))
        hardware = torch.cuda.get_device_name()
        peak_name = "bf16 matmul peak"
    for r in rows:
        r["mfu"] = r["achieved_gflops"] / peak
    print(f"\n{hardware}; {peak_name} {peak:.1f} GFLOP/s (measured in this run); "
          f"load average {load_before[0]:.1f} → {os.getloadavg()[0]:.1f}\n")
    print("| case | batch × context | compile | ms/step | tokens/s | GFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['batch']} × {r['n_ctx']} | {'yes' if r['compile'] else 'no'} | "
              f"{r['ms_per_step']:.1f} | {r['tokens_per_s']:,.0f} | {r['achieved_gflops']:.1f} | {r['mfu']:.0%} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train-{device}.json"
    out.write_text(json.dumps({"hardware": hardware, "peak_gflops": peak, "peak": peak_name,
                               "load_average_1min": load_before + (os.getloadavg()[0],),
                               "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
