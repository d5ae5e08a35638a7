"""What each layer's MLP contributes (G5), measured by taking it away, against controls.

For one text, the next-token loss (and, given an answer position, the answer's probability) is
measured with the model intact and then, layer by layer, with that layer's MLP

- zeroed:          its output replaced by 0 — the MLP removed;
- mean-ablated:    its output replaced by its mean over the text's positions — the constant part
                   kept, the per-token part removed (the control for "it only adds a bias");
- unit-shuffled:   its hidden units permuted before the down-projection — an MLP of the same
                   width and activation statistics whose wiring is scrambled (the control for
                   "any update of that size would do").

Every variant changes positions 1… only: the first token's stream is left as it is, because
many trained models make it the "attention sink" (see G4) and breaking it there breaks every
later position for reasons that have nothing to do with what the MLP computes for them. The
mean is taken over the same positions. The three variants of one layer run as one batch of
three copies of the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model import GPT
from .common import as_batch, evaluating


@dataclass
class MLPAblation:
    loss: float  # intact model: mean next-token loss over the text (nats)
    token_loss: torch.Tensor  # (T-1,) intact model, per predicted token
    delta: dict[str, torch.Tensor]  # "zero" / "mean" / "shuffle" → (n_layers,) loss change
    token_delta_zero: torch.Tensor  # (n_layers, T-1): per-token loss change with the MLP zeroed
    p_answer: float | None  # intact model's probability of the answer
    p_answer_by: dict[str, torch.Tensor]  # variant → (n_layers,) the answer's probability


VARIANTS = ("zero", "mean", "shuffle")


def mlp_ablation(model: GPT, tokens, answer_at: int | None = None, seed: int = 0) -> MLPAblation:
    """tokens (T,): a text; answer_at: a position p whose next token tokens[p+1] is the "answer"."""
    ids = as_batch(tokens)  # (1, T)
    x, y = ids[:, :-1], ids[0, 1:]
    L = model.cfg.n_layers
    names = [f"blocks.{i}.mlp.out" for i in range(L)]
    with evaluating(model):
        logits, cache = model.run_with_cache(x, names=names)
        token_loss = F.cross_entropy(logits[0].float(), y, reduction="none")  # (T-1,)
        p_answer = None if answer_at is None else float(logits[0, answer_at].float().softmax(-1)[y[answer_at]])
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(model.cfg.d_mlp, generator=g)
        delta = {v: torch.zeros(L) for v in VARIANTS}
        p_by = {v: torch.zeros(L) for v in VARIANTS}
        token_delta = torch.zeros(L, x.shape[1])
        batch = x.expand(3, -1)  # rows: zero, mean, shuffle
        for i in range(L):
            mean_out = cache[names[i]][0, 1:].mean(0)  # (d_model,) over positions 1…

            def replace_out(out, name, mean_out=mean_out):
                out = out.clone()
                out[0, 1:] = 0.0
                out[1, 1:] = mean_out
                return out

            def shuffle_units(post, name):
                post = post.clone()
                post[2, 1:] = post[2, 1:][..., perm]
                return post

            with model.hooks({names[i]: replace_out, f"blocks.{i}.mlp.post": shuffle_units}):
                out = model(batch).float()  # (3, T-1, d_vocab)
            losses = F.cross_entropy(out.flatten(0, 1), y.repeat(3), reduction="none").view(3, -1)
            for r, v in enumerate(VARIANTS):
                delta[v][i] = losses[r].mean() - token_loss.mean()
                if answer_at is not None:
                    p_by[v][i] = out[r, answer_at].softmax(-1)[y[answer_at]]
            token_delta[i] = losses[0] - token_loss
    return MLPAblation(float(token_loss.mean()), token_loss, delta, token_delta, p_answer, p_by)


def near_zero_fraction(h: torch.Tensor, rel: float = 0.1) -> float:
    """The share of entries with |h| < rel × mean |h|."""
    a = h.abs().float()
    return float((a < rel * a.mean()).float().mean())
