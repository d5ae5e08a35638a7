"""Training the translator and the fixed-query classifier on their generated tasks.

Both train through glassgpt.trainer.Trainer, the loop `glassgpt train` uses: the same AdamW groups,
warm-up and cosine decay, gradient clipping, NaN guard, callbacks and resumable state. What differs
is only the loss function and the batches: `TaskBatches` draws fresh examples from the task each step.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GlassError
from ..trainer import Trainer, next_token_loss
from .decode import greedy
from .model import EncoderDecoder, Seq2SeqConfig
from .pooling import PoolConfig, PoolingClassifier
from .task import Task, TaskConfig


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3  # warm-up to lr, then cosine decay to lr / 10 at the last step
    warmup: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
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


class TaskBatches:
    """The Trainer's batches: make(generator) draws fresh examples; the generator's state makes it resumable."""

    def __init__(self, make: Callable[[torch.Generator], tuple], seed: int):
        self.make, self.generator = make, torch.Generator().manual_seed(seed)

    def next(self) -> tuple:
        return self.make(self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))


class _Losses:
    """Keeps every step's loss and passes it on as on_step(step from 0, loss)."""

    def __init__(self, on_step: Callable[[int, float], None] | None):
        self.losses: list[float] = []
        self.on_step_fn = on_step

    def on_step(self, trainer, step, metrics) -> None:
        self.losses.append(metrics["loss"])
        if self.on_step_fn:
            self.on_step_fn(step - 1, metrics["loss"])


def fit(model: nn.Module, loss_fn: Callable, batches: TaskBatches, cfg: TrainConfig,
        on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Train for cfg.steps steps through the Trainer; returns the loss of every step."""
    record = _Losses(on_step)
    trainer = Trainer(model, loss_fn, batches, max_steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup,
                      weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2), grad_clip=cfg.grad_clip,
                      callbacks=[record])
    trainer.fit()
    model.eval()
    return record.losses


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

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src, tgt_in, tgt_out = task.translation_batch(task.sample_numbers(cfg.batch_size, g))
        return src, tgt_in, tgt_out.masked_fill(tgt_out == task.tgt_vocab.pad_id, -100)  # padding counts for nothing

    t0 = time.perf_counter()
    losses = fit(model, next_token_loss, TaskBatches(batch, cfg.seed), cfg, on_step)
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

    def class_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        src, labels = batch  # (B, S), (B,)
        return F.cross_entropy(model(src), labels)

    t0 = time.perf_counter()
    batches = TaskBatches(lambda g: task.classification_batch(cfg.batch_size, g), cfg.seed)
    losses = fit(model, class_loss, batches, cfg, on_step)
    return model, {"losses": losses, "train_seconds": time.perf_counter() - t0}


@torch.no_grad()
def accuracy(model: PoolingClassifier, task: Task, n: int = 2000, seed: int = 10_000) -> float:
    """Accuracy on n fresh examples from a generator the training never used."""
    src, labels = task.classification_batch(n, torch.Generator().manual_seed(seed))
    return (model(src).argmax(-1) == labels).float().mean().item()


def default_train_config(task: TaskConfig) -> TrainConfig:
    return TrainConfig() if task.name != "sorted" else TrainConfig(steps=3000, batch_size=64, lr=3e-3, warmup=50)
