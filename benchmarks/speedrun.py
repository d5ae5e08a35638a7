"""Speedrun: the lowest validation loss on Tiny Shakespeare (character level) in 5 minutes of wall time.

The validation split is the last 10% of the text (as nanoGPT's). The recipe is glassgpt/configs/speedrun.toml
(architecture, optimiser, schedule, batch, context, dtype); the only thing this script adds is fitting the
schedule to the clock: after a few steps it measures the step time and sets max_steps (and the cosine's end)
so that training plus the final evaluation end inside the budget; a hard time limit backs that up.
The reported loss is the mean next-token loss over *every* non-overlapping window of the validation split.

    .venv/bin/python benchmarks/speedrun.py                  # 300 s, 2 threads
    .venv/bin/python benchmarks/speedrun.py --seconds 60     # a quicker look
    .venv/bin/python benchmarks/speedrun.py --steps 900 --threads 1   # a step budget instead of the clock

Writes benchmarks/results/speedrun.json and docs/speedrun-loss.png (with --steps: speedrun-steps<N>.json and
no plot). A step budget compares recipes on a busy machine, where the clock would measure the other jobs:
the loss after N steps, and the step time measured on a quiet machine, say where 5 minutes would end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from matvec import cpu_info

from glassgpt.data import prepare, windows
from glassgpt.train import make_config, next_token_loss, plot_losses, train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


class FitToBudget:
    """Fit the schedule to the clock: from step `probe` on, every `every` steps, measure the recent step time
    and set max_steps (and the cosine's end) so that training plus the final evaluation end inside the budget.
    If the machine speeds up or slows down, the remaining steps follow; a hard deadline backs this up."""

    def __init__(self, budget_s: float, reserve_s: float, probe: int = 20, every: int = 10, val_steps: float = 0.0):
        self.budget, self.reserve, self.probe, self.every = budget_s, reserve_s, probe, every
        self.val_steps = val_steps  # the final evaluation's cost in training steps (a forward is ~1/3 of a step)
        self.t0 = time.perf_counter()
        self.marks: dict[int, float] = {}
        self.deadline = self.t0 + budget_s - reserve_s

    def on_step(self, trainer, step, metrics) -> None:
        now = self.marks[step] = time.perf_counter()
        if step >= self.probe and step % self.every == 0:
            since = max(5, step - 5 * self.every)  # the last ~50 steps (skipping the first, slow ones)
            rate = (now - self.marks[since]) / (step - since)  # s/step
            self.deadline = self.t0 + self.budget - self.reserve - self.val_steps * rate
            steps = step + max(1, int((self.deadline - now) / rate))
            if step == self.probe:
                print(f"fit to budget: {rate * 1000:.0f} ms/step → about {steps} steps", flush=True)
            trainer.max_steps = trainer.decay_steps = max(steps, step + 1)
        if now > self.deadline:
            trainer.should_stop = True


@torch.no_grad()
def full_val_loss(model, val: np.ndarray, n_ctx: int, dtype: str, batch: int = 64) -> float:
    """Mean loss over every non-overlapping window of the validation split (with the run's autocast)."""
    starts = np.arange(0, len(val) - n_ctx - 1, n_ctx)
    total = 0.0
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        for i in range(0, len(starts), batch):
            x, y = windows(val, starts[i:i + batch], n_ctx)
            total += next_token_loss(model, (x, y)).item() * len(x)
    return total / len(starts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps (no clock)")
    ap.add_argument("--config", default="speedrun")
    ap.add_argument("overrides", nargs="*", help="TrainConfig overrides, as key=value")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    from glassgpt.train import parse_overrides

    wall0 = time.perf_counter()
    load_before = os.getloadavg()[0]  # other work on the machine slows the run and so raises the loss
    data = prepare("tinyshakespeare", tokenizer="char", val_fraction=0.1)  # cached after the first time
    out = Path(tempfile.mkdtemp(prefix="speedrun-"))
    cfg = make_config(args.config, {"data": str(data), "out_dir": str(out), "threads": args.threads,
                                    **parse_overrides([f"--{o}" for o in args.overrides])})
    budget = args.seconds - (time.perf_counter() - wall0)
    n_val = int(json.loads((data / "manifest.json").read_text())["split"]["val_tokens"])
    val_steps = n_val / (cfg.batch_size * cfg.model_config().n_ctx) / 3  # forward only
    if args.steps:
        cfg.max_steps = args.steps  # the cosine ends there too (decay_steps 0)
    callbacks = [] if args.steps else [FitToBudget(budget, reserve_s=3.0, val_steps=val_steps)]

    run = train(cfg, callbacks=callbacks)
    val = full_val_loss(run.model, run.data.val, run.train_ctx, cfg.dtype)
    wall = time.perf_counter() - wall0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    records.append({"step": run.trainer.step, "val_loss": val})
    if not args.steps:
        plot_losses(records, ROOT / "docs" / "speedrun-loss.png",
                    title=f"speedrun: Tiny Shakespeare (char), val loss {val:.3f} in {wall:.0f} s on {args.threads} threads")
    steps = run.trainer.step
    result = {"val_loss": val, "wall_s": wall, "steps": steps, "tokens": steps * cfg.batch_size * run.train_ctx,
              "threads": args.threads, "budget_s": 0 if args.steps else args.seconds, "step_budget": args.steps,
              "ms_per_step": float(np.median([r["ms"] for r in records if "ms" in r])),
              "cpu": cpu_info(),
              "load_average_1min": [load_before, os.getloadavg()[0]], "config": cfg.to_dict(),
              "model": run.model_cfg.to_dict(), "parameters": run.model.num_params(), "torch": torch.__version__,
              "curve": [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"speedrun-steps{args.steps}.json" if args.steps else "speedrun.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nval loss {val:.4f} (all {len(run.data.val):,} validation characters) after {steps} steps, "
          f"{result['tokens']:,} training tokens, {wall:.1f} s wall, {result['ms_per_step']:.0f} ms/step (median)")
    print(f"wrote benchmarks/results/{name}" + ("" if args.steps else " and docs/speedrun-loss.png"))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
