"""The single-head vs multi-head experiment (T13): same width, same parameters, same steps.

With d_model fixed, n_heads only decides how the Q/K/V width is cut: one head of d_model,
or n heads of d_model/n. Every weight matrix keeps its shape, so the parameter count is
identical and only the number of separate attention patterns per layer changes: one kind
of relation in one space, or several in parallel subspaces.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..model import GPT
from ..tokenizer import CharTokenizer
from ..trainer import Trainer


@dataclass
class HeadsResult:
    n_heads: int
    parameters: int
    steps: int
    val_loss: float
    train_loss: float
    seconds: float
    curve: list[tuple[int, float]]  # (step, val_loss)


class RandomWindows:
    """Batches of random (x, y) windows from a token tensor, seeded; the Trainer's `Batches`."""

    def __init__(self, tokens: torch.Tensor, n_ctx: int, batch_size: int, seed: int):
        self.tokens, self.n_ctx, self.batch_size = tokens, n_ctx, batch_size
        self.seed, self.position = seed, 0

    def next(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.position)
        self.position += 1
        starts = torch.randint(0, len(self.tokens) - self.n_ctx - 1, (self.batch_size,), generator=g)
        rows = torch.stack([self.tokens[s:s + self.n_ctx + 1] for s in starts.tolist()])  # (B, n_ctx+1)
        return rows[:, :-1], rows[:, 1:]

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def next_token_loss(model, batch) -> torch.Tensor:
    x, y = batch
    logits = model(x)  # (B, T, d_vocab)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


@torch.no_grad()
def val_loss(model: GPT, tokens: torch.Tensor, n_ctx: int, n_windows: int = 32) -> float:
    was = model.training
    model.eval()
    starts = torch.linspace(0, len(tokens) - n_ctx - 1, n_windows).long().tolist()
    rows = torch.stack([tokens[s:s + n_ctx + 1] for s in starts])
    loss = float(next_token_loss(model, (rows[:, :-1], rows[:, 1:])))
    model.train(was)
    return loss


def train_heads(text: str, n_heads: int, steps: int, d_model: int = 64, n_layers: int = 2, n_ctx: int = 64,
                batch_size: int = 16, lr: float = 3e-3, seed: int = 0, eval_every: int = 0) -> HeadsResult:
    """Train one character-level model with n_heads heads; the data, init seed and batches are shared."""
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    cfg = ModelConfig(d_vocab=tok.vocab_size, n_ctx=n_ctx, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                      positions="rope", norm="rmsnorm", attn_bias=False, mlp_bias=False, name=f"{n_heads}-heads")
    torch.manual_seed(seed)
    model = GPT(cfg)
    curve: list[tuple[int, float]] = []

    class Curve:
        def on_step(self, trainer, step, metrics):
            if eval_every and step % eval_every == 0:
                curve.append((step, val_loss(model, val_ids, n_ctx)))

    trainer = Trainer(model, next_token_loss, RandomWindows(train_ids, n_ctx, batch_size, seed), max_steps=steps,
                      lr=lr, warmup_steps=max(1, steps // 20), weight_decay=0.1, betas=(0.9, 0.99),
                      callbacks=[Curve()])
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    final = val_loss(model, val_ids, n_ctx)
    train = val_loss(model, train_ids[-len(val_ids):], n_ctx)
    return HeadsResult(n_heads, model.num_params(), steps, final, train, seconds, curve)


def uniform_loss(text: str) -> float:
    """ln(vocabulary): the loss of an untrained model that spreads its bets evenly."""
    return math.log(len(set(text)))
