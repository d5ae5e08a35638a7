"""A training loop that knows nothing about GPT: a model, a loss function, batches, callbacks.

    for each step:   lr ← warmup-then-cosine(step)
                     for each micro-batch:  loss = loss_fn(model, batch) / accum;  loss.backward()
                     stop if the loss or the gradient norm is NaN/inf (before the weights change)
                     clip the gradient norm;  AdamW step
                     callbacks: on_step, then on_eval every eval_every steps, on_checkpoint every checkpoint_every

AdamW decays only matrices (weights with 2+ dimensions); biases and norm gains are left alone.
MuonAdamW (opt-in) updates the hidden matrices with Muon and everything else with AdamW.
Under DistributedDataParallel the gradients are averaged across ranks on the last micro-batch,
and the logged loss is the mean over ranks, so every rank sees the same numbers and stops together.

Callbacks are plain objects with any of these methods (inspection during training plugs in here):
    on_step(trainer, step, metrics)   on_eval(trainer, step, metrics)
    on_checkpoint(trainer, step, path)   on_end(trainer)
"""

from __future__ import annotations

import base64
import contextlib
import math
import random
import time
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .distributed import mean_over_ranks
from .errors import GlassError


class NonFiniteLoss(GlassError):
    """The loss (or the gradient) became NaN or infinite: training stops before the weights are touched."""


class Batches(Protocol):
    def next(self) -> Any: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def next_token_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The pre-training objective (T11): cross-entropy of each position's logits against the next token.

    batch: (inputs..., targets). A GPT's is (x, y); a translator's (src, tgt_in, tgt_out). Targets of -100
    (padding) count for nothing.
    """
    *inputs, targets = batch  # targets: (B, T)
    logits = model(*inputs)  # (B, T, d_vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Linear warmup from 0 to lr over warmup_steps, then cosine decay to min_lr at decay_steps, then flat."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)  # 0 → 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: W_E, W_Q, ... decay; biases and norm gains (1-D) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def make_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
               eps: float = 1e-8) -> torch.optim.AdamW:
    device = next(model.parameters()).device.type
    fused = device in ("cpu", "cuda")  # one kernel for all parameters instead of a loop of small ones
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused)


class MuonAdamW:
    """Muon on the hidden matrices, AdamW on the rest (embeddings, norm gains, biases), as one optimizer.

    Muon (torch.optim.Muon) keeps a Nesterov momentum of each matrix's gradient and steps along its
    orthogonalised version (a Newton–Schulz iteration in bf16 pushes every singular value towards 1), so
    each update moves all directions of the matrix by about the same amount. Muon's learning rate is
    muon_lr, scheduled like AdamW's (its groups carry lr_scale = muon_lr / lr). Its state_dict numbers
    Muon's parameters first, then AdamW's, like one torch optimizer's, so checkpoints store it unchanged.
    """

    def __init__(self, matrices: list[nn.Parameter], rest: list[nn.Parameter], lr: float, muon_lr: float,
                 weight_decay: float, betas: tuple[float, float], momentum: float = 0.95):
        self.muon = torch.optim.Muon(matrices, lr=muon_lr, weight_decay=weight_decay, momentum=momentum)
        for group in self.muon.param_groups:
            group["lr_scale"] = muon_lr / lr
        self.adamw = torch.optim.AdamW(
            [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
             {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}],
            lr=lr, betas=betas, fused=rest[0].device.type in ("cpu", "cuda") if rest else None)
        self.n_muon = len(matrices)

    @property
    def param_groups(self) -> list[dict]:
        """Both optimizers' groups (their own dicts, which load_state_dict replaces: so looked up each time)."""
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        muon, adamw, n = self.muon.state_dict(), self.adamw.state_dict(), self.n_muon
        return {"state": {**muon["state"], **{i + n: s for i, s in adamw["state"].items()}},
                "param_groups": muon["param_groups"] + [{**g, "params": [i + n for i in g["params"]]}
                                                        for g in adamw["param_groups"]]}

    def load_state_dict(self, state: dict) -> None:
        n, k = self.n_muon, len(self.muon.param_groups)
        ids = {int(i): s for i, s in state["state"].items()}
        self.muon.load_state_dict({"state": {i: s for i, s in ids.items() if i < n},
                                   "param_groups": state["param_groups"][:k]})
        self.adamw.load_state_dict({"state": {i - n: s for i, s in ids.items() if i >= n},
                                    "param_groups": [{**g, "params": [i - n for i in g["params"]]}
                                                     for g in state["param_groups"][k:]]})


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        batches: Batches,
        *,
        max_steps: int,
        lr: float = 1e-3,
        min_lr: float | None = None,
        warmup_steps: int = 0,
        decay_steps: int | None = None,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        grad_clip: float = 1.0,
        grad_accum: int = 1,
        eval_fn: Callable[[], dict[str, float]] | None = None,
        eval_every: int = 0,
        checkpoint_fn: Callable[["Trainer"], Any] | None = None,
        checkpoint_every: int = 0,
        callbacks: Iterable[Any] = (),
        autocast_dtype: torch.dtype | None = None,
        tokens_per_step: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        self.model, self.loss_fn, self.batches = model, loss_fn, batches
        self.max_steps, self.lr, self.warmup_steps = max_steps, lr, warmup_steps
        self.min_lr = lr / 10 if min_lr is None else min_lr
        self.decay_steps = max_steps if decay_steps is None else decay_steps
        self.grad_clip, self.grad_accum = grad_clip, grad_accum
        self.eval_fn, self.eval_every = eval_fn, eval_every
        self.checkpoint_fn, self.checkpoint_every = checkpoint_fn, checkpoint_every
        self.callbacks = list(callbacks)
        self.autocast_dtype, self.tokens_per_step = autocast_dtype, tokens_per_step
        self.optimizer = optimizer or make_adamw(model, lr, weight_decay, betas)
        self.device_type = next(model.parameters()).device.type
        self.step = 0  # optimizer steps completed
        self.should_stop = False  # a callback may set this to end the run after the current step
        self.last_eval: dict[str, float] = {}

    # -- the loop

    def fit(self) -> None:
        self.model.train()
        if self.step == 0 and self.eval_fn and self.eval_every:
            self._evaluate()  # the starting point of the loss curve: an untrained model
        while self.step < self.max_steps and not self.should_stop:
            metrics = self.train_step()
            self._call("on_step", self.step, metrics)
            at_end = self.step == self.max_steps or self.should_stop
            if self.eval_fn and self.eval_every and (self.step % self.eval_every == 0 or at_end):
                self._evaluate()
            if self.checkpoint_fn and self.checkpoint_every and (self.step % self.checkpoint_every == 0 or at_end):
                self.save_checkpoint()
        self._call("on_end")

    def train_step(self) -> dict[str, float]:
        """One optimizer step over grad_accum micro-batches; returns its metrics."""
        t0 = time.perf_counter()
        lr = lr_at(self.step, self.lr, self.min_lr, self.warmup_steps, self.decay_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # lr_scale: a second optimizer's peak (MuonAdamW)
        total = torch.zeros((), device=next(self.model.parameters()).device)
        for micro in range(self.grad_accum):
            batch = self.batches.next()
            last = micro == self.grad_accum - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self.autocast():
                    loss = self.loss_fn(self.model, batch) / self.grad_accum
                loss.backward()
            total += loss.detach().float()
        loss_value = mean_over_ranks(total).item()
        step = self.step + 1
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"the loss became {loss_value} at step {step}; training stopped before "
                                f"updating the weights{self._last_good()}")
        grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip or float("inf")))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"the gradient norm became {grad_norm} at step {step}; training stopped before "
                                f"updating the weights{self._last_good()}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step = step
        dt = time.perf_counter() - t0
        metrics = {"loss": loss_value, "lr": lr, "grad_norm": grad_norm, "ms": dt * 1000}
        if self.tokens_per_step:
            metrics["tokens_per_s"] = self.tokens_per_step / dt
        return metrics

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def _evaluate(self) -> None:
        self.model.eval()
        with self.autocast():
            self.last_eval = dict(self.eval_fn())
        self.model.train()
        self._call("on_eval", self.step, self.last_eval)

    def save_checkpoint(self) -> Any:
        path = self.checkpoint_fn(self)
        self.last_checkpoint = path
        self._call("on_checkpoint", self.step, path)
        return path

    def _last_good(self) -> str:
        path = getattr(self, "last_checkpoint", None)
        return f"; the last good checkpoint is {path}" if path else ""

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # -- state, for checkpoints

    def state_dict(self) -> dict:
        """Everything but the model weights: step, optimizer, data position, RNG states."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "data": self.batches.state_dict(),
                "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batches.load_state_dict(state["data"])
        set_rng_state(state["rng"])


def rng_state() -> dict:
    """Every random number generator training touches (dropout, sampling), as JSON-friendly values."""
    state = {"python": _b64(repr(random.getstate()).encode()),
             "numpy": _b64(repr(_numpy_state()).encode()),
             "torch": _b64(torch.get_rng_state().numpy().tobytes())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def parse_rng_state(state: dict) -> tuple:
    """A saved rng_state() → (python, numpy, torch, cuda) states, every part checked; GlassError if damaged."""
    import ast
    import binascii

    if not isinstance(state, dict):
        raise GlassError(f"expected an object of base64 strings, got {type(state).__name__}")
    try:
        python = _tuples(ast.literal_eval(base64.b64decode(state["python"], validate=True).decode()))
        random.Random().setstate(python)  # checks the tuple's form without touching the global generator
        name, keys, pos, has_gauss, cached = ast.literal_eval(base64.b64decode(state["numpy"], validate=True).decode())
        numpy = (name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
        np.random.RandomState().set_state(numpy)
        cpu = torch.frombuffer(bytearray(base64.b64decode(state["torch"], validate=True)), dtype=torch.uint8)
        torch.Generator().set_state(cpu)
        cuda = [torch.frombuffer(bytearray(base64.b64decode(s, validate=True)), dtype=torch.uint8)
                for s in state.get("cuda", [])]
    except KeyError as e:
        raise GlassError(f"no {e.args[0]} state") from None
    except (binascii.Error, UnicodeDecodeError, SyntaxError, ValueError, TypeError, RuntimeError, OverflowError,
            MemoryError, RecursionError) as e:
        raise GlassError(f"{type(e).__name__}: {str(e).strip()[:80]}") from None
    return python, numpy, cpu, cuda


def set_rng_state(state: dict) -> None:
    """Restore rng_state(); the whole state is parsed and checked before any generator changes."""
    python, numpy, cpu, cuda = parse_rng_state(state)
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _numpy_state() -> tuple:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
