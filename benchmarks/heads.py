"""T13: one attention head vs several, at the same width, parameter count and number of steps.

Character-level Tiny Shakespeare; d_model 64, 2 layers, context 64, batch 16, AdamW 3e-3 with
warmup and cosine decay; the same seeds (initialisation and batches) for every head count.
With d_model fixed, n_heads only cuts the Q/K/V width into d_model/n_heads slices, so every
weight matrix — and the parameter count — is identical. Each configuration is trained once
per seed; the table shows the validation loss (mean ± spread over seeds).

    .venv/bin/python benchmarks/heads.py             # 3 seeds × 600 steps; writes benchmarks/results/heads.json
    .venv/bin/python benchmarks/heads.py --quick     # 1 seed × 150 steps
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from glassgpt.data import tinyshakespeare_text
from glassgpt.inspect.multihead import train_heads, uniform_loss
from glassgpt.io import write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--heads", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; 1 is faster on a busy machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or (150 if args.quick else 600)
    seeds = args.seeds or (1 if args.quick else 3)
    text = tinyshakespeare_text()
    rows = []
    print(f"Tiny Shakespeare (chars), d_model 64, 2 layers, context 64, batch 16, {steps} steps, {seeds} seed(s); "
          f"uniform guess = {uniform_loss(text):.3f}")
    print(f"{'heads':>5} {'d_head':>6} {'params':>8} {'val loss':>16} {'train loss':>10} {'s/run':>6}")
    for H in args.heads:
        runs = [train_heads(text, H, steps, d_model=64, n_layers=2, n_ctx=64, batch_size=16, seed=s) for s in range(seeds)]
        vals = [r.val_loss for r in runs]
        row = {"n_heads": H, "d_head": 64 // H, "parameters": runs[0].parameters, "steps": steps,
               "val_loss": vals, "val_loss_mean": statistics.mean(vals),
               "val_loss_spread": (max(vals) - min(vals)) / 2, "train_loss_mean": statistics.mean(r.train_loss for r in runs),
               "seconds_per_run": statistics.mean(r.seconds for r in runs)}
        rows.append(row)
        print(f"{H:5d} {64 // H:6d} {row['parameters']:8,d} {row['val_loss_mean']:9.3f} ± {row['val_loss_spread']:.3f} "
              f"{row['train_loss_mean']:10.3f} {row['seconds_per_run']:6.1f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("heads-quick.json" if args.quick else "heads.json")
    write_json(out, {"benchmark": "heads (T13)", "steps": steps, "seeds": seeds, "rows": rows,
                     "machine": platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                     "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
