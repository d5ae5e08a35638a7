"""Activation patching: which activations carry the answer?

Run the model on a clean prompt ("The capital of France is") and on a corrupted one that differs
in one fact ("The capital of Italy is"), same length. Then run the corrupted prompt again, but
replace one activation — one layer's residual stream at one position, or one head's output — with
its value from the clean run, and measure how much of the clean answer comes back (a metric such
as logit(" Paris") − logit(" Rome")). Done for every layer × position (or layer × head), the
grid shows where the model carries the fact, and when it moves from the word to the last token.

The two unpatched runs are the grid's controls: the metric on the clean run (all of the answer)
and on the corrupted run (none of it). `PatchResult.normalised()` puts each cell on that scale.

Also here, for people coming from TransformerLens: `to_tokens` and `to_str_tokens`. (Per-head
weight views are in `glassgpt.inspect.weights`; `model.run_with_hooks` is on every glassgpt model.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import GlassError
from ..model import GPT
from .common import as_batch, evaluating, token_labels

Metric = Callable[[torch.Tensor], "torch.Tensor | float"]  # logits (1, T, d_vocab) → a number

# What can be patched, and where its position / head axis is: resid (B, T, d_model), z (B, H, T, d_head).
ACTIVATIONS = {
    "resid_pre": "blocks.{i}.resid_pre",  # the residual stream entering block i
    "resid_mid": "blocks.{i}.resid_mid",  # after block i's attention
    "resid_post": "blocks.{i}.resid_post",  # leaving block i
    "attn_out": "blocks.{i}.attn.out",  # what block i's attention adds to the stream
    "mlp_out": "blocks.{i}.mlp.out",  # what block i's MLP adds
    "z": "blocks.{i}.attn.z",  # each head's weighted sum of values, before W_O
}
PER_HEAD = ("z",)


# ----------------------------------------------------------------------------- tokens, TransformerLens style


def to_tokens(tokenizer, text: str, prepend_bos: bool = False) -> torch.Tensor:
    """Text → a (1, T) LongTensor of ids. prepend_bos puts the tokenizer's BOS first (when it has one)."""
    ids = tokenizer.encode(text)
    if prepend_bos and tokenizer.bos_id is not None:
        ids = [tokenizer.bos_id] + ids
    return as_batch(ids)


def to_str_tokens(tokenizer, text: "str | torch.Tensor | Sequence[int]", prepend_bos: bool = False) -> list[str]:
    """Each token as the text it stands for (from a string or from ids), e.g. ['The', ' capital', ' of', …]."""
    ids = to_tokens(tokenizer, text, prepend_bos) if isinstance(text, str) else as_batch(text)
    return [tokenizer.decode([int(i)]) for i in ids[0]]


# ----------------------------------------------------------------------------- metrics


def logit_diff(right: int, wrong: int) -> Metric:
    """logit(right) − logit(wrong) at the last position: how much the model prefers the clean answer."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, right] - logits[0, -1, wrong]

    return metric


# ----------------------------------------------------------------------------- patching


@dataclass
class PatchResult:
    grid: torch.Tensor  # (n_layers, n_cols): the metric with that one activation patched in
    activation: str  # e.g. "resid_pre"
    over: str  # "positions" | "heads"
    rows: list[str]  # layer labels
    cols: list[str]  # token labels (positions) or head labels
    clean: float  # the metric on the clean run (the answer fully there)
    corrupted: float  # the metric on the corrupted run (the answer gone)

    def normalised(self) -> torch.Tensor:
        """(patched − corrupted) / (clean − corrupted): 1 where one patch restores the clean answer, 0 where it
        changes nothing."""
        gap = self.clean - self.corrupted
        if abs(gap) < 1e-9:
            raise GlassError("the clean and corrupted runs give the same metric: nothing to restore")
        return (self.grid - self.corrupted) / gap

    def figure(self, normalised: bool = True):
        """A heatmap: layers down, positions or heads across."""
        from matplotlib.figure import Figure

        data = self.normalised() if normalised else self.grid
        n_rows, n_cols = data.shape
        fig = Figure(figsize=(1.6 + 0.55 * n_cols, 1.2 + 0.22 * n_rows), layout="constrained")
        ax = fig.add_subplot()
        bound = float(data.abs().max()) or 1.0
        image = ax.imshow(data.numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
        ax.set_xticks(range(n_cols), [c.replace("$", r"\$") for c in self.cols], rotation=60, ha="right",
                      fontsize=8)
        ax.set_yticks(range(n_rows), self.rows, fontsize=7)
        ax.set_xlabel("patched position" if self.over == "positions" else "patched head")
        ax.set_ylabel("layer")
        what = "fraction of the clean answer restored" if normalised else "metric"
        ax.set_title(f"{self.activation} patched from the clean run: {what}\n"
                     f"(clean {self.clean:.2f}, corrupted {self.corrupted:.2f})", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
        return fig


def activation_patching(model: GPT, clean: torch.Tensor, corrupted: torch.Tensor, metric: Metric,
                        activation: str = "resid_pre", over: str = "positions", tokenizer=None) -> PatchResult:
    """Patch `activation` from the clean run into the corrupted run, one layer × position (or layer × head) at a
    time, and return the metric for each as a grid (see the module docstring).

    clean, corrupted: token ids of the same length, (T,) or (1, T).
    activation: one of ACTIVATIONS; over="heads" needs a per-head activation ("z").
    """
    if activation not in ACTIVATIONS:
        raise GlassError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if over not in ("positions", "heads"):
        raise GlassError(f"over must be 'positions' or 'heads', got {over!r}")
    if over == "heads" and activation not in PER_HEAD:
        raise GlassError(f"patching over heads needs a per-head activation ({', '.join(PER_HEAD)}), not {activation}")
    clean, corrupted = as_batch(clean), as_batch(corrupted)
    if clean.shape != corrupted.shape:
        raise GlassError(f"clean and corrupted prompts must have the same number of tokens (positions line up), "
                         f"got {clean.shape[1]} and {corrupted.shape[1]}")
    L, T, H = model.cfg.n_layers, clean.shape[1], model.cfg.n_heads
    names = [ACTIVATIONS[activation].format(i=i) for i in range(L)]
    n_cols = H if over == "heads" else T
    with evaluating(model):
        clean_logits, cache = model.run_with_cache(clean, names=names)
        corrupted_logits = model(corrupted)
        grid = torch.empty(L, n_cols)
        batch = corrupted.expand(n_cols, T)  # one copy of the corrupted prompt per column, each patched differently
        for layer, name in enumerate(names):
            source = cache[name][0]  # (T, d_model) or (H, T, d_head)

            def patch(x: torch.Tensor, _name: str, source=source) -> torch.Tensor:
                x = x.clone()
                for j in range(n_cols):
                    if over == "heads":
                        x[j, j] = source[j]  # head j, every position
                    elif activation in PER_HEAD:
                        x[j, :, j] = source[:, j]  # every head, position j
                    else:
                        x[j, j] = source[j]  # position j of the residual stream
                return x

            logits = model.run_with_hooks(batch, fwd_hooks=[(name, patch)])
            grid[layer] = torch.stack([torch.as_tensor(metric(logits[j:j + 1])).float() for j in range(n_cols)])
    cols = token_labels(tokenizer, corrupted[0].tolist()) if over == "positions" else [f"H{h}" for h in range(H)]
    if over == "positions" and tokenizer is not None:
        cols = [f"{a}/{b}" if a != b else a for a, b in zip(token_labels(tokenizer, clean[0].tolist()), cols)]
    return PatchResult(grid, activation, over, [f"L{i}" for i in range(L)], cols,
                       float(metric(clean_logits)), float(metric(corrupted_logits)))
