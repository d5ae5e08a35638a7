"""What cross-attention and the fixed queries read, as numbers and as small PNG heatmaps.

`alignment` gives, for each output character, the weight it put on each source character
(per decoder layer, averaged over heads); `query_view` gives the same for each fixed query
of the pooling classifier. The plots draw those matrices; the CLI prints them as text.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io import write_atomic
from .model import EncoderDecoder
from .pooling import PoolingClassifier
from .task import Task


@dataclass
class Alignment:
    source: list[str]  # the source characters (columns)
    output: list[str]  # the output characters, <eos> last (rows)
    pattern: torch.Tensor  # (n_dec_layers, n_heads, T, S): cross-attention weights; rows sum to 1


@torch.no_grad()
def alignment(model: EncoderDecoder, task: Task, source: str, output_ids: list[int]) -> Alignment:
    """Rerun the decoder on <bos> + output (teacher forcing) and read every layer's cross-attention pattern.

    Row t is the query that produced output token t (<eos> included when the output ended).
    """
    tv = task.tgt_vocab
    src = task.encode_sources([source])  # (1, S)
    tgt_in = torch.tensor([[tv.bos_id] + list(output_ids)])  # (1, T + 1)
    _, cache = model.run_with_cache(src, tgt_in[:, : model.cfg.tgt_ctx], names="decoder.blocks.*.cross_attn.pattern")
    pattern = torch.stack([cache[f"decoder.blocks.{i}.cross_attn.pattern"][0] for i in range(model.cfg.n_dec_layers)])
    T = min(len(output_ids), pattern.shape[2])  # the query after the last output token predicts nothing we show
    return Alignment(list(source), [tv.piece(i) for i in output_ids[:T]], pattern[:, :, :T])


@dataclass
class QueryView:
    source: list[str]  # the input characters (columns)
    pattern: torch.Tensor  # (n_heads, n_queries, T): where each fixed query looks
    probs: torch.Tensor  # (n_classes,)


@torch.no_grad()
def query_view(model: PoolingClassifier, task: Task, text: str) -> QueryView:
    src = task.encode_sources([text])  # (1, T)
    logits, cache = model.run_with_cache(src, names="pool.attn.pattern")
    return QueryView(list(text), cache["pool.attn.pattern"][0], torch.softmax(logits[0], -1))


def _show(c: str) -> str:
    return {" ": "␣", "<eos>": "⏎"}.get(c, c)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def plot_alignment(a: Alignment, path: str | Path, title: str = "") -> Path:
    """One heatmap per decoder layer (heads averaged): rows = output characters, columns = source characters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers, _, T, S = a.pattern.shape
    fig, axes = plt.subplots(1, n_layers, figsize=(1.2 + n_layers * (0.9 + 0.32 * S), 0.9 + 0.17 * T), squeeze=False)
    for layer, ax in enumerate(axes[0]):
        ax.imshow(a.pattern[layer].mean(0).numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(S), [_show(c) for c in a.source], fontsize=8)
        ax.set_yticks(range(T), [_show(c) for c in a.output], fontsize=7)
        ax.xaxis.tick_top()
        ax.set_xlabel(f"decoder layer {layer}: cross-attention", fontsize=8)
    fig.suptitle(title or f"{''.join(a.source)} → {''.join(a.output).removesuffix('<eos>')}", fontsize=9, y=0.0)
    data = _png(fig)
    plt.close(fig)
    return write_atomic(path, data)


def plot_queries(v: QueryView, labels: list[str], path: str | Path) -> Path:
    """Rows = the fixed queries (heads averaged), columns = the input's characters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pattern = v.pattern.mean(0)  # (n_queries, T)
    Q, T = pattern.shape
    fig, ax = plt.subplots(figsize=(1.5 + 0.4 * T, 0.8 + 0.35 * Q))
    ax.imshow(pattern.numpy(), cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(T), v.source)
    ax.set_yticks(range(Q), [f"query {q}" for q in range(Q)], fontsize=8)
    best = int(v.probs.argmax())
    ax.set_title(f"{''.join(v.source)}: {labels[best]} (p={float(v.probs[best]):.2f})", fontsize=9)
    data = _png(fig)
    plt.close(fig)
    return write_atomic(path, data)


def alignment_text(a: Alignment, layer: int = -1) -> str:
    """One line per output character: the source character it read most, and how much."""
    pattern = a.pattern[layer].mean(0)  # (T, S)
    lines = []
    for t, c in enumerate(a.output):
        s = int(pattern[t].argmax())
        lines.append(f"  {_show(c)!s:>3} ← {a.source[s]!r} (position {s}, weight {float(pattern[t, s]):.2f})")
    return "\n".join(lines)


def queries_text(v: QueryView) -> str:
    pattern = v.pattern.mean(0)  # (n_queries, T)
    lines = []
    for q in range(pattern.shape[0]):
        weights = " ".join(f"{c}:{float(w):.2f}" for c, w in zip(v.source, pattern[q]))
        lines.append(f"  query {q}: {weights}")
    return "\n".join(lines)
