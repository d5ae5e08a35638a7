"""Pre-training a GPT from scratch (G1 "pre-trained", G7, T11, T14): config → data → model → Trainer.

    TrainConfig (glassgpt.train_config: defaults; a TOML file; `--key=value` overrides, type-checked)
      → processes and device (glassgpt.distributed)
      → data: a recipe or a path, prepared once into token files (glassgpt.data)
      → model: a preset with overrides, a checkpoint to resume, or a pretrained model to fine-tune
      → Trainer (glassgpt.trainer): AdamW, warmup + cosine, clipping, accumulation, evaluation, NaN guard
      → the run folder (glassgpt.run_folder) and the callbacks that fill it (glassgpt.callbacks)

The same command runs on one process or under `torchrun --nproc_per_node=N` (DistributedDataParallel:
gloo on CPU, NCCL on GPU); then each rank reads its own rows of every batch and only rank 0 writes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .callbacks import MetricsLog, ProgressBar, TimeLimit, make_qk_tracker, plot_losses, say
from .checkpoint import latest_checkpoint, load_weights, save_checkpoint
from .config import ModelConfig
from .data import BatchSampler, TokenData, eval_starts, open_data, prepare, resolve_data, windows
from .distributed import (Dist, barrier, gather_json, init_distributed, mean_over_ranks, pick_device,
                          shutdown_distributed)
from .errors import GlassError
from .generate import SampleConfig, sliding_stream
from .load import load_model
from .model import GPT
from .run_folder import default_out_dir, write_run_folder
from .sizes import check_memory
from .targets import claim_folder, is_training_run
from .train_config import (MODEL_FIELDS, TrainConfig, bundled_configs, make_config, parse_overrides,
                           read_config_file)
from .trainer import MuonAdamW, Trainer, make_adamw, next_token_loss, rng_state, set_rng_state

__all__ = ["train", "Run", "next_token_loss", "compile_blocks", "make_callbacks", "make_optimizer",
           # where they used to live, still importable from here:
           "TrainConfig", "MODEL_FIELDS", "make_config", "parse_overrides", "read_config_file", "bundled_configs",
           "plot_losses", "say"]


@dataclass
class Run:
    """One training run: what `train()` built, kept together so callbacks, tests and benchmarks can reach it."""

    cfg: TrainConfig
    dist: Dist
    device: str
    out: Path
    data: TokenData
    tokenizer: object
    model_cfg: ModelConfig
    model: GPT
    train_ctx: int  # the window length trained on (fine-tuning may use less than the model's n_ctx)
    started: int = 0  # the step resumed from
    trainer: Trainer | None = None
    log: object = field(default=say, repr=False)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The mean loss over fixed validation windows (the same every time), split over the ranks."""
        B, T = self.cfg.batch_size, self.train_ctx
        n = self.cfg.eval_batches * B * self.dist.world_size
        starts = eval_starts(len(self.data.val), T, n)
        mine = starts[self.dist.rank::self.dist.world_size]  # (eval_batches · B,) this rank's windows
        total = torch.zeros((), device=self.device)
        for i in range(0, len(mine), B):
            x, y = windows(self.data.val, mine[i:i + B], T, self.device)
            total += next_token_loss(self.model, (x, y)).float() * len(x)
        return {"val_loss": mean_over_ranks(total / len(mine)).item()}

    def save_checkpoint(self, trainer: Trainer) -> Path | None:
        rngs = gather_json(rng_state(), self.dist, self.device)  # every rank's generators: their dropout differs
        if not self.dist.main:
            return None
        state = trainer.state_dict()
        if self.dist.enabled:
            state["rng_ranks"] = rngs
        return save_checkpoint(self.out, self.model, self.model_cfg, state, self.cfg.keep_checkpoints)

    def sample(self) -> str:
        """The prompt and a sample of cfg.sample_tokens tokens from the model as it is now."""
        cfg = SampleConfig(max_new_tokens=self.cfg.sample_tokens, temperature=self.cfg.sample_temperature,
                           seed=self.cfg.seed)
        self.model.eval()
        prompt = self.cfg.sample_prompt or "\n"
        try:
            self.tokenizer.encode(prompt)
        except GlassError:
            prompt = self.tokenizer.decode([0])
        return prompt + "".join(sliding_stream(self.model, self.tokenizer, prompt, cfg))


def make_callbacks(run: Run) -> list:
    """The time limit on every rank; the log, plot and progress bar on the main one."""
    callbacks: list = []
    if run.cfg.max_seconds:
        callbacks.append(TimeLimit(run.cfg.max_seconds))
    if run.dist.main:
        callbacks.append(MetricsLog(run.out, keep_until=run.started, log=run.log))
        if run.cfg.progress:
            callbacks.append(ProgressBar(run.cfg.max_steps, run.started))
        if run.cfg.track_qk:
            callbacks.append(make_qk_tracker(run.out, run.model, run.tokenizer, run.cfg.track_qk))
    return callbacks


def compile_blocks(model: GPT) -> None:
    """torch.compile each block and the unembedding in place (the weights keep their names; the token
    checks in GPT.forward stay eager, where they cannot force a recompilation for every new batch)."""
    for module in [*model.blocks, model.unembed]:
        module.compile()


def make_optimizer(model: GPT, cfg: TrainConfig):
    """AdamW on every weight, or (optimizer = "muon") Muon on the blocks' matrices and AdamW on the rest:
    the embedding (and the unembedding tied to it), norm gains and biases."""
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        return make_adamw(model, cfg.lr, cfg.weight_decay, betas)
    matrices = [p for p in model.blocks.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if all(p is not m for m in matrices)]
    return MuonAdamW(matrices, rest, cfg.lr, cfg.muon_lr, cfg.weight_decay, betas)


def train(cfg: TrainConfig, resume: str | None = None, latest_good: bool = False, log=say,
          callbacks: list = (), overwrite: bool = False) -> Run:
    """Set up the run, train, write the last checkpoint and plot; returns the Run (model, trainer, folder).

    A new run goes into a new or empty folder; an earlier run there is replaced only with overwrite=True,
    and a folder holding anything else is never written into (glassgpt.targets)."""
    # 1. processes, device, run folder
    dist = init_distributed(cfg.device)
    try:
        device = pick_device(cfg.device, dist)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        out = Path(resume) if resume else Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg.data)
        if dist.enabled and not cfg.out_dir and not resume:
            raise GlassError("under torchrun, set --out-dir so that every process writes to the same run folder")
        if not resume:  # every rank looks (nothing changes yet), then the first one clears an old run
            replace = claim_folder(out, "a training run", is_training_run, overwrite,
                                   alternative=f"or continue it: glassgpt train --resume {out}")
            barrier(dist)
            if replace and dist.main:
                shutil.rmtree(out)

        # 2. where the weights come from: a checkpoint (resume), a pretrained model (fine-tune), or nowhere
        ckpt = latest_checkpoint(out, latest_good=latest_good, warn=lambda m: log(f"warning: {m}")) if resume else None
        pretrained = load_model(cfg.init_from) if not resume and cfg.init_from not in ("scratch", "resume") else None

        # 3. the data, prepared once (by the first process on each machine, then the others find it)
        def locate_data() -> Path:
            if resume and (out / "data" / "manifest.json").is_file():
                return out / "data"  # a fine-tuning run keeps its data, encoded with the model's tokenizer
            if pretrained is not None:
                return prepare(cfg.data, out / "data", pretrained.tokenizer, cfg.val_fraction)
            return resolve_data(cfg.data, cfg.tokenizer, cfg.val_fraction)

        data_dir = locate_data() if dist.local_rank == 0 else None
        barrier(dist)
        data_dir = data_dir or locate_data()
        data = open_data(data_dir)
        tokenizer = pretrained.tokenizer if pretrained is not None else data.tokenizer

        # 4. the model
        torch.manual_seed(cfg.seed)
        model_cfg = (ckpt.model_cfg if ckpt is not None else pretrained.model.cfg if pretrained is not None
                     else cfg.model_config(data.tokenizer.vocab_size))
        if model_cfg.d_vocab < data.tokenizer.vocab_size:
            raise GlassError(f"the model's vocabulary ({model_cfg.d_vocab}) is smaller than the data's "
                             f"tokenizer ({data.tokenizer.vocab_size})")
        if ckpt is None and pretrained is None:  # weights, gradients and AdamW's two moments: 4 floats each
            check_memory(model_cfg, copies=4, what="training this model")
        model = pretrained.model if pretrained is not None else GPT(model_cfg)
        if ckpt is not None:
            load_weights(model, ckpt.weights, ckpt.path / "model.safetensors")
        model.to(device).train()
        torch.manual_seed(cfg.seed + dist.rank)  # dropout masks differ between ranks
        forward_model: torch.nn.Module = model
        if cfg.compile:
            compile_blocks(model)
        if dist.enabled:
            ids = [torch.device(device).index] if device.startswith("cuda") else None
            forward_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        train_ctx = min(cfg.n_ctx or model_cfg.n_ctx, model_cfg.n_ctx)
        run = Run(cfg, dist, device, out, data, tokenizer, model_cfg, model, train_ctx,
                  started=ckpt.step if ckpt is not None else 0, log=log)

        # 5. the optimiser and the loop: each rank reads its own rows of every batch
        sampler = BatchSampler(data.train, train_ctx, cfg.batch_size, cfg.seed, dist.rank, dist.world_size, device)
        run.trainer = Trainer(
            forward_model, next_token_loss, sampler, max_steps=cfg.max_steps, lr=cfg.lr,
            min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps, decay_steps=cfg.decay_steps or None,
            grad_clip=cfg.grad_clip, grad_accum=cfg.grad_accum, eval_fn=run.evaluate, eval_every=cfg.eval_every,
            checkpoint_fn=run.save_checkpoint, checkpoint_every=cfg.checkpoint_every,
            autocast_dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else None,
            tokens_per_step=cfg.batch_size * train_ctx * cfg.grad_accum * dist.world_size,
            optimizer=make_optimizer(model, cfg),
        )
        if ckpt is not None:
            run.trainer.load_state_dict(ckpt.state)  # rank 0's generators, on every rank ...
            ranks = ckpt.state.get("rng_ranks") or []
            if dist.enabled and len(ranks) == dist.world_size:
                set_rng_state(ranks[dist.rank])  # ... then each rank's own, so its dropout continues exactly
            elif dist.rank:
                torch.manual_seed(cfg.seed + dist.rank + 7919 * ckpt.step)
                if dist.rank == 1:
                    log(f"warning: {ckpt.path.name} holds the random state of {len(ranks) or 1} process(es), not "
                        f"{dist.world_size}: ranks after the first start new dropout masks")
            log(f"resuming {out} from {ckpt.path.name} (step {ckpt.step})")

        # 6. the run folder, the callbacks, and go
        if dist.main:
            write_run_folder(out, cfg.to_dict(), tokenizer, data_dir, {
                "device": device, "world_size": dist.world_size, "model": model_cfg.to_dict(),
                "parameters": model.num_params(), "resumed": ckpt is not None})
            log(f"run folder {out} | {model.num_params() / 1e6:.2f}M parameters | {device} × {dist.world_size} | "
                f"{data.manifest['name']}: {data.manifest['split']['train_tokens']:,} train tokens")
        run.trainer.callbacks += [*callbacks, *make_callbacks(run)]
        run.trainer.fit()
        barrier(dist)  # every rank done before the group goes
    finally:
        shutdown_distributed(dist)
    return run
