"""The tour's machinery: the Tour object the stops share, their step budgets, and the toy models.

Every training the tour runs has a fixed number of optimizer steps and runs on one torch
thread, so what it shows does not depend on how busy the machine is; only the time it takes
does. The toy is a small character model trained on Tiny Shakespeare (shipped in the package),
with its untrained twin (the same initial weights) and, for the stops that need it, a twin
trained the same way on the same characters shuffled (every character's frequency kept, every
sequence destroyed): the control that shows what training learns from order.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..config import ModelConfig
from ..data import load_corpus
from ..errors import GlassError
from ..inspect.baselines import ngram_losses
from ..inspect.multihead import RandomWindows, next_token_loss, val_loss
from ..inspect.plots import save
from ..inspect.qk import QKTracker
from ..load import load_model
from ..model import GPT
from ..tokenizer import CharTokenizer
from ..trainer import Trainer


@dataclass(frozen=True)
class Budget:
    """Every training in the tour, in optimizer steps (and the sizes of the models trained)."""

    toy_steps: int = 400  # the 2-layer character model of G1, G7, T4, T11, T14, T16 (and its shuffled twin)
    toy_layers: int = 2
    toy_d_model: int = 64
    toy_heads: int = 4
    toy_ctx: int = 64
    toy_batch: int = 16
    track_every: int = 50  # Q/K measured every this many steps
    heads_steps: int = 150  # T13: each of (1 head, 4 heads) × heads_seeds runs
    heads_seeds: int = 3
    translator_steps: int = 300  # T5: digits → words
    classifier_steps: int = 400  # T5: sorted or not, by fixed learned queries

    def quick(self) -> "Budget":
        """A short version for tests: every effect still visible, in a fraction of the time."""
        return replace(self, toy_steps=250, heads_steps=80, translator_steps=200, classifier_steps=250)


FULL = Budget()
QUICK = FULL.quick()


@contextlib.contextmanager
def one_thread():
    """Small models train faster on one thread, above all on a machine other jobs share."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class Deadline:
    """A training callback: stop when the wall clock passes `at` (a safety net, off by default)."""

    def __init__(self, at: float | None):
        self.at = at

    def on_step(self, trainer, step, metrics) -> None:
        if self.at is not None and time.monotonic() > self.at:
            trainer.should_stop = True


@dataclass
class Toy:
    """A small character model trained for a fixed number of steps, with its untrained twin."""

    model: GPT
    untrained: GPT  # the same initial weights, never trained
    tokenizer: object
    train_ids: torch.Tensor  # (N_train,) the text it trained on (shuffled, for the shuffled twin)
    val_ids: torch.Tensor  # (N_val,) the held-out end of the real text (never shuffled)
    losses: list[float]  # the training loss at steps 1 … steps
    evals: list[tuple[int, float]]  # (step, validation loss), from step 0
    qk: list[dict]  # Q/K records (glassgpt.inspect.qk), from step 0
    steps: int  # steps done
    budget: int  # steps asked for
    baselines: dict[str, float]  # uniform, unigram, bigram cross-entropy on the validation text
    shuffled: bool = False

    @property
    def short(self) -> bool:
        return self.steps < self.budget

    def sample(self, n: int = 2000) -> str:
        return self.tokenizer.decode(self.val_ids[:n].tolist())


def train_toy(text: str, out_dir: Path, budget: Budget = FULL, shuffle: bool = False, seed: int = 1337,
              deadline: float | None = None, log: Callable[[str], None] = print) -> Toy:
    """Train the toy model on `text` (characters) for budget.toy_steps steps, Q/K tracked as it goes."""
    b = budget
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    split = int(0.9 * len(ids))  # the last 10% is the validation text, as data.prepare splits it
    train_ids, val_ids = ids[:split], ids[split:]
    if len(train_ids) < 20 * b.toy_ctx or len(val_ids) < 2 * b.toy_ctx + 2:
        raise GlassError(f"the tour's text has {len(ids):,} characters: too few for context {b.toy_ctx}")
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        train_ids = train_ids[torch.randperm(len(train_ids), generator=g)]
    cfg = ModelConfig(d_vocab=tok.vocab_size, n_ctx=b.toy_ctx, d_model=b.toy_d_model, n_layers=b.toy_layers,
                      n_heads=b.toy_heads, positions="rope", norm="rmsnorm", attn_bias=False, mlp_bias=False,
                      name="tour-toy-shuffled" if shuffle else "tour-toy")
    torch.manual_seed(seed)
    model = GPT(cfg)
    untrained = GPT(cfg).eval()
    untrained.load_state_dict(model.state_dict())
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    losses: list[float] = []
    evals: list[tuple[int, float]] = []

    class Record:
        def on_step(self, trainer, step, metrics):
            losses.append(metrics["loss"])

        def on_eval(self, trainer, step, metrics):
            evals.append((step, metrics["val_loss"]))

    tracker = QKTracker(out_dir, model, tok, every=b.track_every)
    what = "shuffled characters" if shuffle else "the text"
    log(f"  (training the toy: {b.toy_layers} layers, d_model {b.toy_d_model}, {b.toy_steps} steps on {what}, "
        f"1 thread)")
    trainer = Trainer(model, next_token_loss, RandomWindows(train_ids, b.toy_ctx, b.toy_batch, seed),
                      max_steps=b.toy_steps, lr=3e-3, warmup_steps=max(1, b.toy_steps // 20), weight_decay=0.1,
                      betas=(0.9, 0.99), eval_fn=lambda: {"val_loss": val_loss(model, val_ids, b.toy_ctx)},
                      eval_every=max(1, b.toy_steps // 10), callbacks=[Record(), tracker, Deadline(deadline)])
    t0 = time.perf_counter()
    with one_thread():
        trainer.fit()
    log(f"  (trained {trainer.step} steps in {time.perf_counter() - t0:.0f} s)")
    return Toy(model.eval(), untrained, tok, train_ids, val_ids, losses, evals, tracker.records, trainer.step,
               b.toy_steps, ngram_losses(ids[:split], val_ids, tok.vocab_size), shuffled=shuffle)


@dataclass
class Tour:
    out: Path
    smol_spec: str | None = None
    data: str | None = None  # a text file or a recipe; default Tiny Shakespeare (shipped in the package)
    budget: Budget = FULL
    log: Callable[[str], None] = print
    max_minutes: float | None = None  # a safety net: trainings past it stop early, and their stops say so
    _smol: object = None
    _text: str | None = None
    _toys: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # the current stop's
    started: float = field(default_factory=time.monotonic)

    def smol(self):
        if self._smol is None:
            t0 = time.perf_counter()
            self._smol = load_model(self.smol_spec)
            self._smol.model.eval()
            self.log(f"  (loaded {Path(self._smol.source).name} in {time.perf_counter() - t0:.0f} s)")
        return self._smol

    def text(self) -> str:
        if self._text is None:
            self._text = load_corpus(self.data or "tinyshakespeare").text
        return self._text

    def toy(self, shuffled: bool = False) -> Toy:
        """The trained toy (or its twin trained on shuffled characters); trained once, on first use."""
        if shuffled not in self._toys:
            deadline = None if self.max_minutes is None else self.started + 60 * self.max_minutes
            with torch.enable_grad():
                self._toys[shuffled] = train_toy(self.text(), self.out / ("toy-shuffled" if shuffled else "toy"),
                                                 self.budget, shuffle=shuffled, deadline=deadline, log=self.log)
        toy = self._toys[shuffled]
        if toy.short:
            self.warn(f"the toy{' (shuffled)' if shuffled else ''} trained {toy.steps} of its {toy.budget} steps "
                      f"(--max-minutes ran out): the numbers below are for an under-trained model")
        return toy

    def say(self, text: str = "") -> None:
        self.log("  " + text.replace("\n", "\n  "))

    def warn(self, text: str) -> None:
        """Loudly: a stop that cannot show what it should says so, and tour.json keeps the warning."""
        self.log("  !! WARNING: " + text)
        self.warnings.append(text)

    def figure(self, fig, name: str) -> str:
        path = save(fig, self.out / name)
        self.say(f"figure: {path}")
        return str(path)

    def ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.smol().tokenizer.encode(text), dtype=torch.long)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def label(tok, i: int) -> str:
    return repr(tok.decode([int(i)]))


def verdict(shown: bool, yes: str, no: str) -> str:
    return ("→ " + yes) if shown else ("→ NOT SHOWN: " + no)
