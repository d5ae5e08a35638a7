"""Callbacks a training run plugs into the Trainer: a time limit, metrics.jsonl + loss.png, a progress bar,
and the Q/K geometry tracker (glassgpt.inspect.qk). Each is a plain object with any of on_step, on_eval,
on_checkpoint and on_end (see glassgpt.trainer)."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

from .errors import GlassError
from .io import write_atomic


def say(message: str) -> None:
    """Print a line without breaking the progress bar."""
    from tqdm import tqdm  # here, not at the top: tqdm is only needed once a run prints

    tqdm.write(message)


class TimeLimit:
    def __init__(self, seconds: float):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def on_step(self, trainer, step, metrics) -> None:
        if time.perf_counter() - self.t0 >= self.seconds:
            trainer.should_stop = True


class MetricsLog:
    """metrics.jsonl (one JSON object per step and per evaluation) and loss.png, redrawn at every evaluation."""

    def __init__(self, run_dir: Path, keep_until: int = 0, log=say):
        self.path, self.png, self.log = Path(run_dir) / "metrics.jsonl", Path(run_dir) / "loss.png", log
        self.records: list[dict] = []
        if self.path.is_file():  # resuming: keep what happened up to the checkpoint, drop the rest
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if rec.get("step", 0) <= keep_until:
                    self.records.append(rec)
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.file = open(self.path, "a", encoding="utf-8")  # appended line by line, flushed each step
        self.t0 = time.time()

    def _write(self, rec: dict) -> None:
        self.records.append(rec)
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def on_step(self, trainer, step, metrics) -> None:
        self._write({"step": step, **{k: round(v, 6) for k, v in metrics.items()}, "time": round(time.time() - self.t0, 3)})

    def on_eval(self, trainer, step, metrics) -> None:
        self._write({"step": step, **metrics, "time": round(time.time() - self.t0, 3)})
        self.log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        plot_losses(self.records, self.png)

    def on_end(self, trainer) -> None:
        plot_losses(self.records, self.png)
        self.file.close()


def plot_losses(records: list[dict], path: Path, title: str = "") -> None:
    """Train loss per step (and its moving average) and validation loss per evaluation, as a PNG."""
    import matplotlib  # here, not at the top: matplotlib takes a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        k = max(1, len(losses) // 50)
        smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, color="tab:blue", label="train")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "next-token loss")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


class ProgressBar:
    def __init__(self, total: int, start: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        self.val: float | None = None

    def on_step(self, trainer, step, metrics) -> None:
        post = {"loss": f"{metrics['loss']:.3f}", "tok/s": f"{metrics.get('tokens_per_s', 0):,.0f}"}
        if self.val is not None:
            post["val"] = f"{self.val:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_eval(self, trainer, step, metrics) -> None:
        self.val = metrics.get("val_loss", self.val)

    def on_end(self, trainer) -> None:
        self.bar.close()


def make_qk_tracker(run_dir: Path, model, tokenizer, every: int):
    """The Q/K geometry tracker (glassgpt.inspect.qk), recording every `every` steps."""
    try:  # imported here: inspection is training's sibling, not its base; only --track-qk needs it
        from .inspect.qk import QKTracker
    except ImportError:
        raise GlassError("--track-qk needs glassgpt.inspect.qk, which is not in this installation") from None
    return QKTracker(run_dir=run_dir, model=model, tokenizer=tokenizer, every=every)
