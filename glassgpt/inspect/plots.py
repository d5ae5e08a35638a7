"""Figures for the inspection tools. Each function returns a matplotlib `Figure`.

They build `Figure` objects directly (no pyplot), so they work the same in a notebook (the
figure displays itself) and in the CLI (`fig.savefig(path)`), whatever the backend. Token
labels are escaped so a "$" never starts mathtext; characters no installed font has (CJK
text on a bare machine) draw as boxes instead of failing.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import torch
from matplotlib import font_manager
from matplotlib.figure import Figure

from ..io import write_atomic
from .heads import SCORES

warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from (current )?font")
warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support .* natively")

_CJK_NAMES = ("Noto Sans CJK", "Noto Sans SC", "Noto Sans JP", "Source Han Sans", "WenQuanYi", "Droid Sans Fallback",
              "AR PL", "Microsoft YaHei", "SimHei", "PingFang", "Hiragino")
_family: list[str] | None = None


def font_family() -> list[str]:
    """DejaVu Sans, then the first installed font that covers CJK (if any) as a fallback."""
    global _family
    if _family is None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        cjk = [n for n in sorted(names) if any(n.startswith(c) for c in _CJK_NAMES)]
        _family = ["DejaVu Sans"] + cjk[:1]
    return _family


def _fig(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig


def safe(label: str) -> str:
    """A label matplotlib draws literally ("$" would start mathtext)."""
    return label.replace("\\", "\\\\").replace("$", r"\$")


def _text_kw() -> dict:
    return {"fontfamily": font_family()}


def _ticks(ax, labels: Sequence[str], axis: str, size: float) -> None:
    ticks = list(range(len(labels)))
    kw = {"fontsize": size, **_text_kw()}
    if axis == "x":
        ax.set_xticks(ticks, [safe(s) for s in labels], rotation=90, **kw)
    else:
        ax.set_yticks(ticks, [safe(s) for s in labels], **kw)


def _label_size(n: int) -> float:
    return max(4.0, min(10.0, 160 / max(n, 1)))


# ----------------------------------------------------------------------------- attention


def attention_heatmap(pattern: torch.Tensor, labels: Sequence[str], title: str = "", scores: bool = False) -> Figure:
    """One head's (T, T) pattern (or raw scores, T8): rows are queries, columns the keys they look at."""
    T = pattern.shape[-1]
    size = min(12.0, 3 + 0.28 * T)
    fig = _fig(size, size)
    ax = fig.add_subplot()
    data = pattern.detach().float().cpu()
    limits = _centred(data) if scores else {"vmin": 0, "vmax": 1}
    im = ax.imshow(data, cmap="RdBu_r" if scores else "viridis", **limits)
    _ticks(ax, labels, "x", _label_size(T))
    _ticks(ax, labels, "y", _label_size(T))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(safe(title), **_text_kw())
    fig.colorbar(im, ax=ax, shrink=0.8, label="score Q·Kᵀ/√d_k" if scores else "attention weight")
    return fig


def _centred(data: torch.Tensor) -> dict:
    m = float(data[torch.isfinite(data)].abs().max()) if torch.isfinite(data).any() else 1.0
    return {"vmin": -m, "vmax": m}


def attention_grid(patterns: torch.Tensor, labels: Sequence[str], title: str = "") -> Figure:
    """All heads of one layer, (H, T, T), side by side."""
    H, T = patterns.shape[0], patterns.shape[-1]
    cols = min(H, 4 if H <= 8 else math.ceil(math.sqrt(H)))
    rows = math.ceil(H / cols)
    cell = min(4.5, 1.5 + 0.14 * T)
    fig = _fig(cell * cols, cell * rows + 0.5)
    show_labels = T <= 40
    for h in range(H):
        ax = fig.add_subplot(rows, cols, h + 1)
        ax.imshow(patterns[h].detach().float().cpu(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {h}", fontsize=9)
        if show_labels:
            _ticks(ax, labels, "x", _label_size(T) * 0.7)
            _ticks(ax, labels, "y", _label_size(T) * 0.7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(safe(title), **_text_kw())
    return fig


# ----------------------------------------------------------------------------- logit lens


def lens_figure(lens, tokenizer, input_labels: Sequence[str], title: str = "logit lens") -> Figure:
    """Stages (rows) × positions (columns): the top-1 guess written in each cell, coloured by its probability."""
    n_stages, T = lens.top_ids.shape[:2]
    fig = _fig(min(24.0, 2.5 + 0.9 * T), min(20.0, 1.5 + 0.32 * n_stages))
    ax = fig.add_subplot()
    prob = lens.top_probs[:, :, 0].float().cpu()
    im = ax.imshow(prob, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    size = max(4.0, min(8.0, 90 / max(T, 1)))
    for s in range(n_stages):
        for t in range(T):
            text = tokenizer.decode([int(lens.top_ids[s, t, 0])]).replace("\n", "\\n")
            ax.text(t, s, safe(text[:10]), ha="center", va="center", fontsize=size,
                    color="white" if prob[s, t] > 0.6 else "black", **_text_kw())
    _ticks(ax, input_labels, "x", _label_size(T))
    _ticks(ax, lens.layer_names, "y", max(4.0, min(9.0, 200 / n_stages)))
    ax.set_xlabel("input position (the guess is for the token after it)")
    ax.set_title(safe(title), **_text_kw())
    fig.colorbar(im, ax=ax, shrink=0.8, label="probability of the top guess")
    return fig


# ----------------------------------------------------------------------------- heads


_SCORE_TITLES = {"distance": "mean attention distance (tokens)", "entropy": "attention entropy (nats)",
                 "prev_token": "previous-token score", "first_token": "first-token score",
                 "induction": "induction score"}


def head_scores_figure(scores, title: str = "") -> Figure:
    """Each score as a layers × heads heatmap."""
    L, H = scores.distance.shape
    fig = _fig(3.2 * len(SCORES), max(3.0, 1.0 + 0.22 * L))
    for n, name in enumerate(SCORES):
        ax = fig.add_subplot(1, len(SCORES), n + 1)
        data = getattr(scores, name).float()
        im = ax.imshow(data, aspect="auto", cmap="magma",
                       **({"vmin": 0, "vmax": 1} if name not in ("distance", "entropy") else {}))
        ax.set_title(_SCORE_TITLES[name], fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(safe(title))
    return fig


def layer_heads_figure(scores, layer: int) -> Figure:
    """One layer: each head's five scores as bars."""
    H = scores.distance.shape[1]
    fig = _fig(3.0 * len(SCORES), 2.8)
    for n, name in enumerate(SCORES):
        ax = fig.add_subplot(1, len(SCORES), n + 1)
        ax.bar(range(H), getattr(scores, name)[layer].float().tolist(), color=f"C{n}")
        ax.set_title(_SCORE_TITLES[name], fontsize=9)
        ax.set_xlabel("head")
        ax.set_xticks(range(H))
        if name not in ("distance", "entropy"):
            ax.set_ylim(0, 1)
    fig.suptitle(f"layer {layer}")
    return fig


def distance_by_layer_figure(distance: torch.Tensor, title: str = "") -> Figure:
    """G4 at a glance: each head's mean attention distance (dots) and the layer's mean (line)."""
    L, H = distance.shape
    fig = _fig(7, 3.5)
    ax = fig.add_subplot()
    for h in range(H):
        ax.scatter(range(L), distance[:, h].tolist(), s=8, color="grey", alpha=0.5)
    ax.plot(range(L), distance.mean(-1).tolist(), color="C3", marker="o", label="mean over heads")
    ax.set_xlabel("layer")
    ax.set_ylabel("mean attention distance (tokens)")
    ax.set_title(safe(title), **_text_kw())
    ax.legend()
    return fig


def distance_sink_figure(raw, rest, sink, uniform: float, uniform_rest: float, title: str = "") -> Figure:
    """G4 with its control: per layer, the mean distance, the distance with token 0 left out, and token 0's share."""
    L = len(raw)
    fig = _fig(7.5, 5.0)
    ax = fig.add_subplot(2, 1, 1)
    ax.plot(range(L), [float(x) for x in raw], marker="o", color="C3", label="mean distance")
    ax.plot(range(L), [float(x) for x in rest], marker="o", color="C0", label="token 0 left out")
    ax.axhline(uniform, color="C3", ls=":", lw=1, label=f"uniform attention {uniform:.1f}")
    ax.axhline(uniform_rest, color="C0", ls=":", lw=1, label=f"uniform, token 0 left out {uniform_rest:.1f}")
    ax.set_ylabel("tokens back (mean over heads)")
    ax.legend(fontsize=7)
    ax.set_title(safe(title), **_text_kw())
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    ax2.bar(range(L), [float(x) for x in sink], color="grey")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("weight on token 0")
    ax2.set_xlabel("layer")
    return fig


def mlp_ablation_figure(result, title: str = "") -> Figure:
    """G5: per layer, the loss change when its MLP is zeroed, mean-ablated or unit-shuffled."""
    fig = _fig(7.5, 3.4)
    ax = fig.add_subplot()
    L = len(result.delta["zero"])
    width = 0.27
    for k, (name, text) in enumerate((("zero", "MLP removed"), ("mean", "only its mean output kept"),
                                      ("shuffle", "its units shuffled"))):
        ax.bar([i + (k - 1) * width for i in range(L)], result.delta[name].tolist(), width=width, label=text)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("loss change (nats/token)")
    ax.set_title(safe(title), **_text_kw())
    ax.legend(fontsize=8)
    return fig


def cosine_matrix_figure(matrices: dict[str, torch.Tensor], labels: Sequence[str], title: str = "") -> Figure:
    """Side-by-side (n, n) cosine-similarity matrices with the same token labels (T4: before/after training)."""
    n = len(labels)
    cell = min(7.0, 2.0 + 0.11 * n)
    fig = _fig(cell * len(matrices) + 0.8, cell + 0.6)
    for k, (name, m) in enumerate(matrices.items()):
        ax = fig.add_subplot(1, len(matrices), k + 1)
        im = ax.imshow(m.float().cpu(), cmap="RdBu_r", vmin=-1, vmax=1)
        _ticks(ax, labels, "x", _label_size(n) * 0.9)
        _ticks(ax, labels, "y", _label_size(n) * 0.9)
        ax.set_title(safe(name), fontsize=10, **_text_kw())
    fig.colorbar(im, ax=fig.axes, shrink=0.7, label="cosine")
    fig.suptitle(safe(title), **_text_kw())
    return fig


# ----------------------------------------------------------------------------- embeddings


def pair_report_figure(report: dict, title: str = "") -> Figure:
    """G9: each pair's cosine with the other pairs' direction, against mismatched and random pairs."""
    rows = report["pairs"]
    fig = _fig(6.5, max(2.5, 0.32 * len(rows) + 1.4))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    for mean, std, colour, text in ((report["random_mean"], report["random_std"], "grey", "random pairs"),
                                    (report["mismatched_mean"], report["mismatched_std"], "C0", "mismatched pairs")):
        ax.axvspan(mean - 2 * std, mean + 2 * std, color=colour, alpha=0.15, label=f"{text} ± 2 sd")
        ax.axvline(mean, color=colour, lw=1)
    ax.scatter([r["cosine"] for r in rows], ys, color=["C3" if r["carries"] else "black" for r in rows], zorder=3)
    names = [f"{r['pair'][0]} → {r['pair'][1]}" + (" *" if r["several_tokens"] else "") for r in rows]
    _ticks(ax, names, "y", 9)
    ax.set_xlim(-0.5, 1)
    ax.invert_yaxis()  # the first pair on top
    ax.set_xlabel("cosine with the other pairs' direction   (* several tokens; red: clears the mismatched by 2 sd)")
    ax.set_title(safe(title), **_text_kw())
    ax.legend(fontsize=7, loc="lower left")
    return fig



def projection_figure(values: Sequence[tuple[str, float]], title: str = "") -> Figure:
    """Words placed along a direction (e.g. woman − man): one bar each, sorted."""
    values = sorted(values, key=lambda wv: wv[1])
    fig = _fig(6, max(2.0, 0.3 * len(values) + 1))
    ax = fig.add_subplot()
    ax.barh(range(len(values)), [v for _, v in values], color=["C0" if v < 0 else "C1" for _, v in values])
    _ticks(ax, [w for w, _ in values], "y", 9)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("coordinate along the direction")
    ax.set_title(safe(title), **_text_kw())
    return fig


def alignment_figure(result: dict, baseline: torch.Tensor | None = None, title: str = "") -> Figure:
    """The pairs' mean cosine against the random-pair baseline (mean ± std, and 3 std)."""
    fig = _fig(6, 2.6)
    ax = fig.add_subplot()
    m, s = result["baseline_mean"], result["baseline_std"]
    xs = torch.linspace(-1, 1, 400)
    ax.plot(xs.tolist(), torch.exp(-0.5 * ((xs - m) / s) ** 2).tolist(), color="grey", label="random pairs")
    ax.axvspan(m - 3 * s, m + 3 * s, color="grey", alpha=0.15)
    n = len(result["cosines"])
    for i in range(n):
        for j in range(i + 1, n):
            ax.axvline(result["cosines"][i][j], color="C0", alpha=0.25, lw=1)
    ax.axvline(result["mean_cosine"], color="C3", lw=2.5, label=f"these pairs: {result['mean_cosine']:.2f}")
    ax.set_xlim(-1, 1)
    ax.set_yticks([])
    ax.set_xlabel("cosine between two pairs' differences")
    ax.set_title(safe(title), **_text_kw())
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------------- probabilities, training


def temperature_figure(probs: dict[float, torch.Tensor], labels: Sequence[str], title: str = "") -> Figure:
    """G12: the same candidates' probabilities at several temperatures."""
    fig = _fig(7, 3.2)
    ax = fig.add_subplot()
    n = len(labels)
    width = 0.8 / max(len(probs), 1)
    for k, (T, p) in enumerate(probs.items()):
        ax.bar([i + k * width for i in range(n)], p.tolist(), width=width, label=f"T = {T:g}")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(n)], [safe(s) for s in labels], rotation=45,
                  **_text_kw())
    ax.set_ylabel("probability")
    ax.set_title(safe(title), **_text_kw())
    ax.legend()
    return fig


def curves_figure(series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str, title: str = "") -> Figure:
    """Line plots: name → (xs, ys)."""
    fig = _fig(6.5, 3.5)
    ax = fig.add_subplot()
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=safe(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(safe(title), **_text_kw())
    if series:
        ax.legend(fontsize=8)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Render to PNG atomically."""
    import io as _io

    buf = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
        fig.savefig(buf, format="png", dpi=dpi)
    return write_atomic(path, buf.getvalue())
