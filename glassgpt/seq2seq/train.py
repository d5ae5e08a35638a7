"""Training the translator and the fixed-query classifier on their generated tasks.

Both train through glassgpt.trainer.Trainer, the loop `glassgpt train` uses: the same AdamW groups,
warm-up and cosine decay, gradient clipping, NaN guard, callbacks and resumable state. What differs
is only the loss function and the batches: `TaskBatches` draws fresh examples from the task each step.

    TrainConfig()  →  a TOML file (--config FILE)  →  --key=value      (glassgpt.configfile, as `glassgpt train`)
    train_run(cfg, out)              a whole `glassgpt seq2seq train` run, written to the run folder `out`
    train_run(cfg, out, resume=True) the same run continued from the trainer state saved in `out`
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import configfile
from ..errors import CheckpointError, GlassError
from ..trainer import Trainer, next_token_loss
from .checkpoint import load_run, read_trainer_state, save_run, write_log
from .decode import greedy
from .model import EncoderDecoder, Seq2SeqConfig
from .pooling import PoolConfig, PoolingClassifier
from .task import TASKS, Task, TaskConfig

# What a task trains with when steps, lr or warmup are not set (None).
TASK_DEFAULTS = {"digits-to-words": dict(steps=600, lr=2e-3, warmup=100),
                 "words-to-digits": dict(steps=600, lr=2e-3, warmup=100),
                 "sorted": dict(steps=3000, lr=3e-3, warmup=50)}
FIXED_ON_RESUME = ("task", "max_number", "d_model")  # they define the model and its data


@dataclass
class TrainConfig:
    """Every knob of a `glassgpt seq2seq train` run, with its defaults in code."""

    # the task and the model
    task: str = "digits-to-words"  # digits-to-words | words-to-digits | sorted
    max_number: int = 9999  # translation: numbers 0..max_number
    d_model: int | None = None  # width of the residual stream; None: the model's default (64)
    # optimisation
    steps: int | None = None  # optimizer steps; None: 600 (translation), 3000 (sorted)
    batch_size: int = 64
    lr: float | None = None  # warm-up to lr, then cosine decay to lr / 10; None: 2e-3 (translation), 3e-3 (sorted)
    warmup: int | None = None  # None: 100 (translation), 50 (sorted)
    decay_steps: int = 0  # where the cosine reaches lr / 10; 0: steps (set it to stop early and --resume later)
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    seed: int = 0
    # the run folder
    out_dir: str = ""  # "": runs/seq2seq-<task>
    checkpoint_every: int = 0  # also save weights + trainer state every N steps; 0: at the end only
    eval: bool = True  # score held-out examples after training

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise GlassError(f"config key task (--task): unknown task {self.task!r}; tasks: {', '.join(TASKS)}")
        for key, value in TASK_DEFAULTS[self.task].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        def bad(name: str, why: str) -> GlassError:
            return GlassError(f"config key {name} (--{name.replace('_', '-')}) {why}, got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, "must be a finite number")
            if f.type in ("int", "int | None") and value is not None and (isinstance(value, bool)
                                                                          or not isinstance(value, int)):
                raise bad(f.name, "must be an integer")
        for name in ("steps", "batch_size", "d_model"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise bad(name, "must be a positive integer")
        for name in ("warmup", "decay_steps", "weight_decay", "grad_clip", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if not self.lr > 0:
            raise bad("lr", "must be a finite positive number")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "must be in [0, 1)")
        TaskConfig(name=self.task, max_number=self.max_number)  # its own range checks

    def to_dict(self) -> dict:
        return asdict(self)


def make_config(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None, base_source: str = "saved config") -> TrainConfig:
    """TrainConfig from its defaults, then a saved run's config (base), then a TOML file, then overrides."""
    return configfile.make(TrainConfig, config_file, overrides, base, base_source=base_source)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """['--steps=100', '--task', 'sorted'] → {'steps': 100, 'task': 'sorted'}, checked against TrainConfig."""
    return configfile.parse_overrides(TrainConfig, args)


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
        on_step: Callable[[int, float], None] | None = None, state: dict | None = None,
        checkpoint: Callable[[Trainer, list[float]], Any] | None = None) -> list[float]:
    """Train up to step cfg.steps through the Trainer; returns the loss of every step taken here.

    state: a Trainer.state_dict() to continue from (with the model's weights already loaded).
    checkpoint(trainer, losses): saves the run, every cfg.checkpoint_every steps and at the end.
    """
    record = _Losses(on_step)
    trainer = Trainer(model, loss_fn, batches, max_steps=cfg.steps, lr=cfg.lr, warmup_steps=cfg.warmup,
                      decay_steps=cfg.decay_steps or None, weight_decay=cfg.weight_decay,
                      betas=(cfg.beta1, cfg.beta2), grad_clip=cfg.grad_clip, callbacks=[record],
                      checkpoint_fn=None if checkpoint is None else lambda t: checkpoint(t, record.losses),
                      checkpoint_every=cfg.checkpoint_every or cfg.steps)
    if state is not None:
        try:  # torch checks the optimizer's groups and the generator's state here, before any step
            trainer.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(f"the saved trainer state does not fit this run ({str(e)[:120]})") from None
    trainer.fit()
    model.eval()
    return record.losses


# ----------------------------------------------------------------------------- translation


def translator_config(task: Task, **overrides) -> Seq2SeqConfig:
    """The default translator for a task: sizes from the task, widths from Seq2SeqConfig's defaults."""
    return Seq2SeqConfig(src_vocab=len(task.src_vocab), tgt_vocab=len(task.tgt_vocab), src_ctx=task.src_ctx,
                         tgt_ctx=task.tgt_ctx, **overrides)


def translator_setup(task: Task, model_cfg: Seq2SeqConfig, cfg: TrainConfig) -> tuple[EncoderDecoder, Callable,
                                                                                      TaskBatches]:
    """Teacher forcing: predict target + <eos> from <bos> + target, cross-entropy on the real tokens."""
    if task.kind != "translation":
        raise GlassError(f"task {task.name!r} is not a translation task")
    torch.manual_seed(cfg.seed)
    model = EncoderDecoder(model_cfg, pad_id=task.src_vocab.pad_id)

    def batch(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        src, tgt_in, tgt_out = task.translation_batch(task.sample_numbers(cfg.batch_size, g))
        return src, tgt_in, tgt_out.masked_fill(tgt_out == task.tgt_vocab.pad_id, -100)  # padding counts for nothing

    return model, next_token_loss, TaskBatches(batch, cfg.seed)


def train_translator(task: Task, model_cfg: Seq2SeqConfig, cfg: TrainConfig,
                     on_step: Callable[[int, float], None] | None = None) -> tuple[EncoderDecoder, dict]:
    model, loss_fn, batches = translator_setup(task, model_cfg, cfg)
    t0 = time.perf_counter()
    losses = fit(model, loss_fn, batches, cfg, on_step)
    return model, {"losses": losses, "train_seconds": time.perf_counter() - t0}


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


def class_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    src, labels = batch  # (B, S), (B,)
    return F.cross_entropy(model(src), labels)


def classifier_setup(task: Task, model_cfg: PoolConfig, cfg: TrainConfig) -> tuple[PoolingClassifier, Callable,
                                                                                   TaskBatches]:
    if task.kind != "classification":
        raise GlassError(f"task {task.name!r} is not a classification task")
    torch.manual_seed(cfg.seed)
    model = PoolingClassifier(model_cfg, pad_id=task.src_vocab.pad_id)
    return model, class_loss, TaskBatches(lambda g: task.classification_batch(cfg.batch_size, g), cfg.seed)


def train_classifier(task: Task, model_cfg: PoolConfig, cfg: TrainConfig,
                     on_step: Callable[[int, float], None] | None = None) -> tuple[PoolingClassifier, dict]:
    model, loss_fn, batches = classifier_setup(task, model_cfg, cfg)
    t0 = time.perf_counter()
    losses = fit(model, loss_fn, batches, cfg, on_step)
    return model, {"losses": losses, "train_seconds": time.perf_counter() - t0}


@torch.no_grad()
def accuracy(model: PoolingClassifier, task: Task, n: int = 2000, seed: int = 10_000) -> float:
    """Accuracy on n fresh examples from a generator the training never used."""
    src, labels = task.classification_batch(n, torch.Generator().manual_seed(seed))
    return (model(src).argmax(-1) == labels).float().mean().item()


# ----------------------------------------------------------------------------- a whole run, as the command makes it


def prepare(cfg: TrainConfig) -> tuple[Task, Seq2SeqConfig | PoolConfig]:
    """The task and the model config a run trains (checked before any folder is touched)."""
    task = Task(TaskConfig(name=cfg.task, max_number=cfg.max_number))
    sizes = {"d_model": cfg.d_model} if cfg.d_model else {}
    return task, (translator_config if task.kind == "translation" else classifier_config)(task, **sizes)


def train_run(cfg: TrainConfig, out: str | Path, resume: bool = False,
              on_step: Callable[[int, float], None] | None = None, say: Callable[[str], None] = print):
    """Train (or, with resume, continue) a run in the folder `out`; returns (model, log).

    The folder holds the weights and the trainer state (glassgpt.seq2seq.checkpoint) after every checkpoint,
    so a run cut short continues with --resume to the weights an uninterrupted run reaches.
    """
    task, model_cfg = prepare(cfg)
    translation = task.kind == "translation"
    model, loss_fn, batches = (translator_setup if translation else classifier_setup)(task, model_cfg, cfg)
    earlier, state, seconds = [], None, 0.0
    if resume:
        run = load_run(out, expect="seq2seq" if translation else "pooling")
        state = read_trainer_state(out)
        if state["step"] >= cfg.steps:
            raise GlassError(f"{out} has already trained {state['step']} steps: pass --steps=N with N > "
                             f"{state['step']} to continue it")
        model.load_state_dict(run.model.state_dict())
        earlier, seconds = list(run.log.get("losses", []))[: state["step"]], float(run.log.get("train_seconds", 0))
    t0 = time.perf_counter()

    def log_now(losses: list[float]) -> dict:
        return {"losses": earlier + losses, "train_seconds": seconds + time.perf_counter() - t0}

    def checkpoint(trainer: Trainer, losses: list[float]) -> Path:
        return save_run(out, model, task, cfg.to_dict(), log_now(losses), trainer.state_dict())

    if translation:
        say(f"training an encoder-decoder ({model_cfg.n_enc_layers}+{model_cfg.n_dec_layers} layers, d_model "
            f"{model_cfg.d_model}) on {task.name}, numbers 0..{task.cfg.max_number}, {len(task.test_numbers)} held out")
    else:
        say(f"training a fixed-query classifier ({model_cfg.n_queries} queries, d_model {model_cfg.d_model}) on "
            f"{task.name}")
    if state is not None:
        say(f"resuming {out} at step {state['step']} of {cfg.steps}")
    log = log_now(fit(model, loss_fn, batches, cfg, on_step, state, checkpoint))
    if cfg.eval and translation:
        log["held_out_exact_match"], wrong = exact_match(model, task, task.test_numbers)
        log["held_out_wrong"] = [list(w) for w in wrong[:50]]
        say(f"held-out exact match: {log['held_out_exact_match']:.2%} of {len(task.test_numbers)}")
    elif cfg.eval:
        log["held_out_accuracy"] = accuracy(model, task)
        say(f"accuracy on fresh examples: {log['held_out_accuracy']:.2%}")
    write_log(out, log)  # the scores join the log; the weights and trainer state are the last checkpoint's
    return model, log
