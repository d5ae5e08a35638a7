"""Training the translator and the fixed-query classifier on their generated tasks.

`fit` is a plain loop that knows nothing about either model: it asks `loss_of(step)` for a
loss, steps AdamW with warm-up and cosine decay, and calls `on_step(step, loss)` and
`on_eval(step)` when given. `train_translator` and `train_classifier` wire it to a task.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GlassError
from .decode import greedy
from .model import EncoderDecoder, Seq2SeqConfig
from .pooling import PoolConfig, PoolingClassifier
from .task import Task, TaskConfig


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise GlassError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise GlassError(f"TrainConfig.lr must be positive, got {self.lr!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(model: nn.Module, loss_of: Callable[[int], torch.Tensor], cfg: TrainConfig,
        on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Minimise loss_of(step) for cfg.steps steps; returns the loss of every step."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("W_pos")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.endswith("W_pos")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    losses = []
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = loss_of(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if on_step:
            on_step(step, losses[-1])
    model.eval()
    return losses


# ----------------------------------------------------------------------------- translation


def translator_config(task: Task, **overrides) -> Seq2SeqConfig:
    """The default translator for a task: sizes from the task, widths from Seq2SeqConfig's defaults."""
    return Seq2SeqConfig(src_vocab=len(task.src_vocab), tgt_vocab=len(task.tgt_vocab), src_ctx=task.src_ctx,
                         tgt_ctx=task.tgt_ctx, **overrides)


def train_translator(task: Task, model_cfg: Seq2SeqConfig, cfg: TrainConfig,
                     on_step: Callable[[int, float], None] | None = None) -> tuple[EncoderDecoder, dict]:
    """Teacher forcing: predict target + <eos> from <bos> + target, cross-entropy on the real tokens."""
    if task.kind != "translation":
        raise GlassError(f"task {task.name!r} is not a translation task")
    torch.manual_seed(cfg.seed)
    model = EncoderDecoder(model_cfg, pad_id=task.src_vocab.pad_id)
    g = torch.Generator().manual_seed(cfg.seed)

    def loss_of(step: int) -> torch.Tensor:
        src, tgt_in, tgt_out = task.translation_batch(task.sample_numbers(cfg.batch_size, g))
        logits = model(src, tgt_in)  # (B, T, tgt_vocab)
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=task.tgt_vocab.pad_id)

    t0 = time.perf_counter()
    losses = fit(model, loss_of, cfg, on_step)
    log = {"losses": losses, "train_seconds": time.perf_counter() - t0}
    return model, log


@torch.no_grad()
def translate_batch(model: EncoderDecoder, task: Task, sources: list[str]) -> list[str]:
    """Greedy translations of many sources at once."""
    tokens, _ = greedy(model, task.encode_sources(sources), task.tgt_vocab.bos_id, task.tgt_vocab.eos_id)
    return [task.tgt_vocab.decode(row) for row in tokens.tolist()]


@torch.no_grad()
def exact_match(model: EncoderDecoder, task: Task, numbers: list[int], batch_size: int = 500) -> tuple[float, list]:
    """Share of numbers translated exactly right (greedy), and the wrong ones as (source, expected, got)."""
    wrong = []
    for i in range(0, len(numbers), batch_size):
        pairs = [task.pair(n) for n in numbers[i: i + batch_size]]
        outs = translate_batch(model, task, [s for s, _ in pairs])
        wrong += [(s, t, o) for (s, t), o in zip(pairs, outs) if o != t]
    return 1 - len(wrong) / len(numbers), wrong


@torch.no_grad()
def char_accuracy(model: EncoderDecoder, task: Task, numbers: list[int]) -> float:
    """Teacher-forced: the share of target characters (and <eos>) predicted right, given the true prefix."""
    src, tgt_in, tgt_out = task.translation_batch(numbers)
    predicted = model(src, tgt_in).argmax(-1)  # (B, T)
    real = tgt_out != task.tgt_vocab.pad_id
    return (predicted == tgt_out)[real].float().mean().item()


# ----------------------------------------------------------------------------- classification


def classifier_config(task: Task, **overrides) -> PoolConfig:
    return PoolConfig(src_vocab=len(task.src_vocab), src_ctx=task.src_ctx, n_classes=len(task.labels), **overrides)


def train_classifier(task: Task, model_cfg: PoolConfig, cfg: TrainConfig,
                     on_step: Callable[[int, float], None] | None = None) -> tuple[PoolingClassifier, dict]:
    if task.kind != "classification":
        raise GlassError(f"task {task.name!r} is not a classification task")
    torch.manual_seed(cfg.seed)
    model = PoolingClassifier(model_cfg, pad_id=task.src_vocab.pad_id)
    g = torch.Generator().manual_seed(cfg.seed)

    def loss_of(step: int) -> torch.Tensor:
        src, labels = task.classification_batch(cfg.batch_size, g)
        return F.cross_entropy(model(src), labels)

    t0 = time.perf_counter()
    losses = fit(model, loss_of, cfg, on_step)
    return model, {"losses": losses, "train_seconds": time.perf_counter() - t0}


@torch.no_grad()
def accuracy(model: PoolingClassifier, task: Task, n: int = 2000, seed: int = 10_000) -> float:
    """Accuracy on n fresh examples from a generator the training never used."""
    src, labels = task.classification_batch(n, torch.Generator().manual_seed(seed))
    return (model(src).argmax(-1) == labels).float().mean().item()


def default_train_config(task: TaskConfig) -> TrainConfig:
    return TrainConfig() if task.name != "sorted" else TrainConfig(steps=3000, batch_size=64, lr=3e-3, warmup=50)
