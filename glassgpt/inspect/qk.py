"""Q and K specialising during training (T14, T16).

Every `every` steps, for each layer and head, `QKTracker` records:

- qk_cosine: cos(W_Q, W_K) of the head's two (d_model, d_head) matrices, flattened — do
  the query and key maps stay alike, or diverge?
- principal_cos: the cosines of the principal angles between the column spaces of W_Q and
  W_K (1 = a shared direction, 0 = orthogonal), mean over the d_head angles; and the angles
  themselves in degrees (angles_deg) — do "what I look for" and "what I offer" live in the
  same subspace of the residual stream?
- norm_Q, norm_K: their Frobenius norms (random init → growth as they learn)
- entropy: the head's attention entropy on a fixed probe text (sharpening attention)
- distance, prev_token, first_token, induction: the head scores of `heads.py`

Records go to RUN/qk.jsonl, one JSON object a line, each score a (n_layers, n_heads) list;
at the end of training RUN/qk.png plots them over the steps. The trainer knows nothing of
this: it calls on_step / on_eval / on_checkpoint / on_end like any callback.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import GlassError
from ..io import write_atomic
from ..model import GPT
from .common import evaluating
from .heads import head_scores
from .weights import head_weights

PROBE_TEXT = (
    "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
    "The quick brown fox jumps over the lazy dog, and the lazy dog sleeps in the sun."
)
RECORD_KEYS = ("qk_cosine", "principal_cos", "norm_Q", "norm_K", "entropy", "distance", "prev_token",
               "first_token", "induction")


def principal_angle_cosines(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of A and B (d, k) → (k,), largest first."""
    Qa, _ = torch.linalg.qr(A.double())  # (d, k): orthonormal basis of A's columns
    Qb, _ = torch.linalg.qr(B.double())
    return torch.linalg.svdvals(Qa.T @ Qb).clamp(0.0, 1.0).float()  # (k,)


def qk_geometry(model: GPT) -> dict[str, list]:
    """Per layer and head: the W_Q/W_K cosine, principal angles and norms (weights only, no forward pass)."""
    out: dict[str, list] = {k: [] for k in ("qk_cosine", "principal_cos", "angles_deg", "norm_Q", "norm_K")}
    with torch.no_grad():
        for layer in range(model.cfg.n_layers):
            w = head_weights(model, layer)
            row = {k: [] for k in out}
            for h in range(model.cfg.n_heads):
                W_Q, W_K = w["W_Q"][h].float(), w["W_K"][h].float()  # (d_model, d_head)
                cosines = principal_angle_cosines(W_Q, W_K)
                row["qk_cosine"].append(float(F.cosine_similarity(W_Q.flatten(), W_K.flatten(), dim=0)))
                row["principal_cos"].append(float(cosines.mean()))
                row["angles_deg"].append([round(float(a), 2) for a in torch.rad2deg(torch.arccos(cosines))])
                row["norm_Q"].append(float(W_Q.norm()))
                row["norm_K"].append(float(W_K.norm()))
            for k in out:
                out[k].append(row[k])
    return out


def measure(model: GPT, probe: torch.Tensor, bos: int | None = None) -> dict[str, list]:
    """Everything QKTracker records, for the model as it is now."""
    record = qk_geometry(model)
    with evaluating(model):
        scores = head_scores(model, probe, bos=bos)
    record.update(scores.as_dict())
    return record


class QKTracker:
    """A training callback: `glassgpt train --track-qk N` measures Q/K every N steps."""

    FILE = "qk.jsonl"
    FIGURE = "qk.png"

    def __init__(self, run_dir: str | Path, model: GPT, tokenizer, every: int = 100, probe_text: str = PROBE_TEXT):
        if not isinstance(every, int) or every <= 0:
            raise GlassError(f"--track-qk must be a positive number of steps, got {every!r}")
        self.run_dir = Path(run_dir)
        self.model, self.every = model, every
        ids = _encode_probe(tokenizer, probe_text)[: model.cfg.n_ctx]
        if len(ids) < 2:
            raise GlassError("the Q/K probe text must encode to at least 2 tokens")
        self.probe = torch.tensor(ids, dtype=torch.long)
        self.bos = getattr(tokenizer, "bos_id", None)
        self.records: list[dict] = []
        self.last_metrics: dict = {}
        self._last_step: int | None = None
        self._resumed = (self.run_dir / self.FILE).is_file()
        if self._resumed:  # a resumed run: keep the history; steps past the checkpoint are dropped at the first step
            self.records = read_records(self.run_dir)
        else:
            self.record(0)  # the random start, before any gradient step (T14)

    # -- callbacks

    def on_step(self, trainer, step: int, metrics: dict | None = None) -> None:
        if self._resumed:
            self.records = [r for r in self.records if r["step"] < step]
            self._resumed = False
        self.last_metrics.update({k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))})
        if step % self.every == 0:
            self.record(step)

    def on_eval(self, trainer, step: int, metrics: dict | None = None) -> None:
        self.last_metrics.update({k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))})

    def on_checkpoint(self, trainer, step: int, path) -> None:
        self.flush()

    def on_end(self, trainer) -> None:
        step = getattr(trainer, "step", None)
        if isinstance(step, int) and step != self._last_step:
            self.record(step)
        self.flush()
        if self.records:
            from .plots import \
                save  # imported here: matplotlib loads when the figure is drawn, not when training starts

            save(qk_figure(self.records), self.run_dir / self.FIGURE)

    # -- recording

    def record(self, step: int) -> dict:
        if step == self._last_step:
            return self.records[-1]
        rec = {"step": int(step), **{k: v for k, v in self.last_metrics.items() if k in ("loss", "val_loss", "lr")}}
        rec.update(measure(self._plain_model(), self.probe, self.bos))
        self.records.append(rec)
        self._last_step = step
        self.flush()
        return rec

    def flush(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        write_atomic(self.run_dir / self.FILE, text)

    def _plain_model(self) -> GPT:
        m = self.model
        return getattr(m, "_orig_mod", m)  # a torch.compile'd model wraps the original


def _encode_probe(tokenizer, text: str) -> list[int]:
    try:
        return tokenizer.encode(text)
    except GlassError:  # a character vocabulary without some of the probe's characters: keep what it has
        known = "".join(c for c in text if tokenizer.piece_to_id(c) is not None)
        return tokenizer.encode(known)


def read_records(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / QKTracker.FILE
    if not path.is_file():
        raise GlassError(f"{path} not found: train with --track-qk N to record Q/K over training")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise GlassError(f"{path}:{n}: not valid JSON ({e})") from None
    return records


def qk_figure(records: list[dict], control: list[dict] | None = None, control_label: str = "control"):
    """Each recorded quantity over training, one line per layer (mean over its heads); a control run's
    records (e.g. the same model trained on shuffled text), if given, as dashed grey lines."""
    from matplotlib.figure import Figure

    keys = [k for k in RECORD_KEYS if k in records[0]]
    steps = [r["step"] for r in records]
    L = len(records[0][keys[0]])
    cols = 3
    rows = -(-len(keys) // cols)
    fig = Figure(figsize=(3.4 * cols, 2.3 * rows), layout="constrained")
    for n, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, n + 1)
        for layer in range(L):
            ys = [sum(r[key][layer]) / len(r[key][layer]) for r in records]
            ax.plot(steps, ys, marker="." if len(steps) < 30 else None, label=f"layer {layer}")
            if control and key in control[0]:
                cs = [sum(r[key][layer]) / len(r[key][layer]) for r in control]
                ax.plot([r["step"] for r in control], cs, color="grey", ls="--", lw=1,
                        label=f"{control_label}, layer {layer}")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
    if L <= 12:
        fig.axes[0].legend(fontsize=7)
    fig.suptitle("Q/K over training (mean over each layer's heads)")
    return fig
