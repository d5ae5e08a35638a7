"""T13: one attention head vs several, at the same width, parameter count and number of steps.

Character-level Tiny Shakespeare; d_model 64, 2 layers, context 64, batch 16, AdamW 3e-3 with
warmup and cosine decay; the same seeds (initialisation and batches) for every head count.
With d_model fixed, n_heads only cuts the Q/K/V width into d_model/n_heads slices, so every
weight matrix — and the parameter count — is identical. Each configuration is trained once
per seed; the table shows the validation loss (mean ± standard deviation over seeds, and the
half-range), then each head count against one head: the difference of the means and two
standard errors of that difference. A difference inside two standard errors is not shown.
The unigram and bigram losses of the same validation text are printed as the floor to beat.

    .venv/bin/python benchmarks/heads.py             # 3 seeds × 600 steps; writes benchmarks/results/heads.json
    .venv/bin/python benchmarks/heads.py --quick     # 1 seed × 150 steps
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from glassgpt.data import tinyshakespeare_text
from glassgpt.inspect.baselines import ngram_losses
from glassgpt.inspect.multihead import train_heads, uniform_loss
from glassgpt.io import write_json
from glassgpt.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--heads", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: these models are small)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or (150 if args.quick else 600)
    seeds = args.seeds or (1 if args.quick else 3)
    text = tinyshakespeare_text()
    rows = []
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text))
    split = int(0.9 * len(ids))  # train_heads' split
    base = ngram_losses(ids[:split], ids[split:], tok.vocab_size)
    print(f"Tiny Shakespeare (chars), d_model 64, 2 layers, context 64, batch 16, {steps} steps, {seeds} seed(s); "
          f"uniform guess = {uniform_loss(text):.3f}, unigram {base['unigram']:.3f}, bigram {base['bigram']:.3f}")
    print(f"{'heads':>5} {'d_head':>6} {'params':>8} {'val loss':>16} {'train loss':>10} {'s/run':>6}")
    for H in args.heads:
        runs = [train_heads(text, H, steps, d_model=64, n_layers=2, n_ctx=64, batch_size=16, seed=s) for s in range(seeds)]
        vals = [r.val_loss for r in runs]
        row = {"n_heads": H, "d_head": 64 // H, "parameters": runs[0].parameters, "steps": steps,
               "val_loss": vals, "val_loss_mean": statistics.mean(vals),
               "val_loss_sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
               "val_loss_spread": (max(vals) - min(vals)) / 2, "train_loss_mean": statistics.mean(r.train_loss for r in runs),
               "seconds_per_run": statistics.mean(r.seconds for r in runs)}
        rows.append(row)
        print(f"{H:5d} {64 // H:6d} {row['parameters']:8,d} {row['val_loss_mean']:9.3f} ± {row['val_loss_sd']:.3f} "
              f"{row['train_loss_mean']:10.3f} {row['seconds_per_run']:6.1f}", flush=True)
    one = next((r for r in rows if r["n_heads"] == 1), None)
    for row in rows:
        if one is None or row is one:
            continue
        diff = one["val_loss_mean"] - row["val_loss_mean"]
        two_se = 2 * math.sqrt((one["val_loss_sd"] ** 2 + row["val_loss_sd"] ** 2) / seeds)
        row["gain_over_one_head"], row["two_standard_errors"] = diff, two_se
        print(f"{row['n_heads']} heads vs 1: {diff:+.3f} nats (two standard errors {two_se:.3f}) → "
              + ("several heads better" if diff > two_se else "one head better" if diff < -two_se else "not separated"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("heads-quick.json" if args.quick else "heads.json")
    write_json(out, {"benchmark": "heads (T13)", "steps": steps, "seeds": seeds, "rows": rows, "baselines": base,
                     "machine": platform.machine(), "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
                     "threads": torch.get_num_threads(),
                     "date": time.strftime("%Y-%m-%d")})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
