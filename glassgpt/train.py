"""Pre-training a GPT from scratch (G1 "pre-trained", G7, T11, T14): config → data → model → Trainer.

    TrainConfig (defaults here; a TOML file; `--key=value` overrides, type-checked)
      → data: a recipe or a path, prepared once into token files (glassgpt.data)
      → model: a preset with overrides, or --init-from a pretrained model (glassgpt.load)
      → Trainer (glassgpt.trainer): AdamW, warmup + cosine, clipping, accumulation, evaluation
      → the run folder: config, code version, tokenizer, metrics.jsonl, loss.png, checkpoints/

The same command runs on one process or under `torchrun --nproc_per_node=N` (DistributedDataParallel:
gloo on CPU, NCCL on GPU); then each rank reads its own rows of every batch and only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import PRESETS, ModelConfig, preset
from .errors import GlassError

MODEL_FIELDS = ("n_layers", "n_heads", "d_model", "n_ctx", "d_mlp", "n_kv_heads", "positions", "norm", "mlp",
                "dropout", "attn_bias", "mlp_bias", "tie_embeddings", "rope_theta")


def say(message: str) -> None:
    """Print a line without breaking the progress bar."""
    from tqdm import tqdm

    tqdm.write(message)


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults pre-train a character-level model on Shakespeare
    in about five minutes on 2 CPU cores (see configs/shakespeare-char.toml for the same, spelled out)."""

    # data
    data: str = "shakespeare"  # a recipe (shakespeare, python-stdlib), a text file or folder, or a prepared folder
    tokenizer: str = "char"  # char | bpe | bpe:VOCAB
    val_fraction: float = 0.1  # the last 10% of the text
    # model: a preset, then any field set here replaces the preset's
    preset: str = "baby"
    n_layers: int | None = 4
    n_heads: int | None = 4
    d_model: int | None = 128
    n_ctx: int | None = 128
    d_mlp: int | None = None
    n_kv_heads: int | None = None
    positions: str | None = "rope"
    norm: str | None = "rmsnorm"
    mlp: str | None = "gelu"
    dropout: float | None = 0.0
    attn_bias: bool | None = False
    mlp_bias: bool | None = False
    tie_embeddings: bool | None = True
    rope_theta: float | None = None
    init_from: str = "scratch"  # scratch | resume | a GGUF file / Hugging Face folder / run folder to fine-tune
    # optimisation
    batch_size: int = 32  # sequences per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 750
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 30
    decay_steps: int = 0  # where the cosine reaches min_lr; 0: max_steps
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0: no clipping
    # evaluation and logging
    eval_every: int = 150
    eval_batches: int = 8  # batches of batch_size validation windows, the same ones every time
    max_seconds: float = 0.0  # > 0: end the run (with a last evaluation and checkpoint) after this long
    # run folder
    out_dir: str = ""  # "" : runs/<data>-<date>-<time>
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    # system
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    dtype: str = "float32"  # float32 | bfloat16 (autocast)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch CPU threads; 0: torch's default
    progress: bool = True  # a live progress bar
    track_qk: int = 0  # > 0: record Q/K geometry every N steps (glassgpt.inspect.qk)
    # the sample printed at the end
    sample_tokens: int = 300
    sample_prompt: str = "\n"
    sample_temperature: float = 0.8

    def validate(self) -> None:
        positive = ["batch_size", "grad_accum", "max_steps", "eval_batches", "keep_checkpoints"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise GlassError(f"config key {name} must be positive, got {getattr(self, name)}")
        for name in ("warmup_steps", "decay_steps", "eval_every", "checkpoint_every", "threads", "track_qk",
                     "sample_tokens", "weight_decay", "grad_clip", "max_seconds", "min_lr"):
            if getattr(self, name) < 0:
                raise GlassError(f"config key {name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise GlassError(f"config key lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise GlassError(f"config keys beta1, beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.dtype not in ("float32", "bfloat16"):
            raise GlassError(f"config key dtype must be float32 or bfloat16, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise GlassError(f"config key device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.preset not in PRESETS:
            raise GlassError(f"config key preset: unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")

    def model_config(self, d_vocab: int) -> ModelConfig:
        changes = {k: getattr(self, k) for k in MODEL_FIELDS if getattr(self, k) is not None}
        base = preset(self.preset)
        if "n_heads" in changes and "n_kv_heads" not in changes:
            changes["n_kv_heads"] = changes["n_heads"]  # a new head count: plain multi-head unless told otherwise
        if "d_model" in changes and "d_mlp" not in changes:
            changes["d_mlp"] = 4 * changes["d_model"]
        try:
            return base.replace(d_vocab=d_vocab, **changes)
        except (ValueError, TypeError) as e:
            raise GlassError(f"model config: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- config: TOML + --key=value


def field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _describe(tp) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return " or ".join(a.__name__ for a in args) + " (or none)" if args else tp.__name__


def coerce(key: str, value: Any, from_text: bool) -> Any:
    """A value for TrainConfig.key, checked against the field's type; text from the command line is parsed."""
    types = field_types()
    if key not in types:
        raise GlassError(f"unknown config key {key!r}; known keys: {', '.join(types)}")
    tp = types[key]
    allowed = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    optional = type(None) in typing.get_args(tp)
    if from_text and optional and str(value).lower() in ("none", "null", ""):
        return None
    if value is None and optional:
        return None
    base = allowed[0]
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if from_text and str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if from_text and str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, bool) or (not from_text and not isinstance(value, int)):
                raise ValueError
            return int(str(value).replace("_", "")) if from_text else value
        if base is float:
            if isinstance(value, bool) or (not from_text and not isinstance(value, (int, float))):
                raise ValueError
            return float(value)
        if base is str:
            if not from_text and not isinstance(value, str):
                raise ValueError
            return str(value)
    except ValueError:
        pass
    raise GlassError(f"config key {key} must be {_describe(tp)}, got {value!r}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file of TrainConfig keys (or the name of a bundled config: shakespeare-char, speedrun, ...)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        bundled = Path(__file__).parent / "configs" / f"{path.stem}.toml"
        if path.parent == Path(".") and bundled.is_file():
            path = bundled
        else:
            raise GlassError(f"config file not found: {path} (bundled configs: {', '.join(bundled_configs())})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GlassError(f"{path}: not valid TOML ({e})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise GlassError(f"{path}: tables are not config keys ([{key}]); write flat key = value lines")
        data[key] = _in_file(path, key, value)
    return data


def _in_file(path: Path, key: str, value: Any) -> Any:
    try:
        return coerce(key.replace("-", "_"), value, from_text=False)
    except GlassError as e:
        raise GlassError(f"{path}: {e}") from None


def bundled_configs() -> list[str]:
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.toml"))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """['--max-steps=100', '--compile', '--device', 'cpu'] → {'max_steps': 100, 'compile': True, 'device': 'cpu'}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise GlassError(f"unexpected argument {arg!r}: overrides are written --key=value")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            tp = field_types().get(key)
            is_bool = tp is not None and bool in (typing.get_args(tp) or (tp,))
            nxt = args[i + 1] if i + 1 < len(args) else None
            if is_bool and (nxt is None or nxt.startswith("--") or nxt.lower() not in ("true", "false")):
                value = "true"
            elif nxt is None or nxt.startswith("--"):
                coerce(key, None, True)  # an unknown key is reported before a missing value
                raise GlassError(f"config key {key} needs a value: --{key.replace('_', '-')}=VALUE")
            else:
                value, i = nxt, i + 1
        out[key] = coerce(key, value, from_text=True)
        i += 1
    return out


def make_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    values = dict(base or {})
    if config_file:
        values.update(read_config_file(config_file))
    values.update(overrides or {})
    known = field_types()
    for key in values:
        if key not in known:
            raise GlassError(f"unknown config key {key!r}")
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; start the process group when there is more than one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, local, world)


def barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown_distributed(d: Dist) -> None:
    """Close the process group before exit: a gloo group left open can abort the process as it ends."""
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def pick_device(name: str, d: Dist) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GlassError("config key device is cuda, but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise GlassError("config key device is mps, but MPS is not available")
    if name == "cuda" and d.enabled:
        name = f"cuda:{d.local_rank}"
    if name.startswith("cuda"):
        torch.cuda.set_device(torch.device(name))
    return name


# ----------------------------------------------------------------------------- the run


def code_version() -> dict[str, str]:
    from . import __version__

    info = {"glassgpt": __version__}
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=5)
        if done.returncode == 0:
            info["git"] = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def default_out_dir(cfg: TrainConfig) -> Path:
    name = Path(cfg.data).name or "data"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def next_token_loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The pre-training objective (T11): cross-entropy of each position's logits against the next token."""
    x, y = batch  # (B, T) each
    logits = model(x)  # (B, T, d_vocab)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


class Run:
    """One training run: everything `train()` sets up, kept together so callbacks and tests can reach it."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, latest_good: bool = False, log=say):
        from .checkpoint import latest_checkpoint, load_weights
        from .data import BatchSampler, open_data, prepare, resolve_data
        from .model import GPT
        from .trainer import Trainer, make_adamw

        self.cfg, self.log = cfg, log
        self.dist = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = pick_device(cfg.device, self.dist)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(resume) if resume else Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
        if self.dist.enabled and not cfg.out_dir and not resume:
            raise GlassError("under torchrun, set --out-dir so that every process writes to the same run folder")

        # the model: from a checkpoint (resume), a pretrained model (fine-tune), or fresh weights
        ckpt, pretrained = None, None
        if resume:
            ckpt = latest_checkpoint(self.out, latest_good=latest_good, warn=lambda m: log(f"warning: {m}"))
        elif cfg.init_from not in ("scratch", "resume"):
            from .load import load_model

            pretrained = load_model(cfg.init_from)

        # the data, prepared once (by the first process on each machine, then the others find it)
        def locate_data() -> Path:
            if resume and (self.out / "data" / "manifest.json").is_file():
                return self.out / "data"  # a fine-tuning run keeps its data, encoded with the model's tokenizer
            if pretrained is not None:
                return prepare(cfg.data, self.out / "data", pretrained.tokenizer, cfg.val_fraction)
            return resolve_data(cfg.data, cfg.tokenizer, cfg.val_fraction)

        if self.dist.local_rank == 0:
            data_dir = locate_data()
        barrier(self.dist)
        if self.dist.local_rank != 0:
            data_dir = locate_data()
        self.data = open_data(data_dir)
        self.tokenizer = pretrained.tokenizer if pretrained is not None else self.data.tokenizer

        torch.manual_seed(cfg.seed)
        if ckpt is not None:
            self.model_cfg = ckpt.model_cfg
        elif pretrained is not None:
            self.model_cfg = pretrained.model.cfg
        else:
            self.model_cfg = cfg.model_config(self.data.tokenizer.vocab_size)
        if self.model_cfg.d_vocab < self.data.tokenizer.vocab_size:
            raise GlassError(f"the model's vocabulary ({self.model_cfg.d_vocab}) is smaller than the data's "
                             f"tokenizer ({self.data.tokenizer.vocab_size})")
        self.train_ctx = min(cfg.n_ctx or self.model_cfg.n_ctx, self.model_cfg.n_ctx)  # fine-tuning may use less
        self.model = pretrained.model if pretrained is not None else GPT(self.model_cfg)
        if ckpt is not None:
            load_weights(self.model, ckpt.weights, ckpt.path / "model.safetensors")
        self.model.to(self.device).train()
        torch.manual_seed(cfg.seed + self.dist.rank)  # dropout masks differ between ranks

        self.forward_model: torch.nn.Module = self.model
        if cfg.compile:
            compile_blocks(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            self.forward_model = DDP(self.forward_model, device_ids=ids)

        self.sampler = BatchSampler(self.data.train, self.train_ctx, cfg.batch_size, cfg.seed,
                                    self.dist.rank, self.dist.world_size, self.device)
        tokens_per_step = cfg.batch_size * self.train_ctx * cfg.grad_accum * self.dist.world_size
        optimizer = make_adamw(self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
        self.trainer = Trainer(
            self.forward_model, next_token_loss, self.sampler, max_steps=cfg.max_steps, lr=cfg.lr,
            min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps, decay_steps=cfg.decay_steps or None,
            grad_clip=cfg.grad_clip, grad_accum=cfg.grad_accum, eval_fn=self.evaluate, eval_every=cfg.eval_every,
            checkpoint_fn=self.save_checkpoint, checkpoint_every=cfg.checkpoint_every,
            autocast_dtype=torch.bfloat16 if cfg.dtype == "bfloat16" else None,
            tokens_per_step=tokens_per_step, optimizer=optimizer,
        )
        if ckpt is not None:
            self.trainer.load_state_dict(ckpt.state)
            if self.dist.rank:
                torch.manual_seed(cfg.seed + self.dist.rank + 7919 * ckpt.step)  # only rank 0's RNG is saved
            log(f"resuming {self.out} from {ckpt.path.name} (step {ckpt.step})")
        self.started = ckpt.step if ckpt is not None else 0
        if self.dist.main:
            self.write_run_folder(data_dir, resumed=ckpt is not None)
        self.trainer.callbacks += self.make_callbacks()

    # -- evaluation: fixed validation windows, split over the ranks

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        from .data import eval_starts, windows

        B, T = self.cfg.batch_size, self.train_ctx
        n = self.cfg.eval_batches * B * self.dist.world_size
        starts = eval_starts(len(self.data.val), T, n)
        mine = starts[self.dist.rank::self.dist.world_size]  # (eval_batches · B,) this rank's windows
        total = torch.zeros((), device=self.device)
        for i in range(0, len(mine), B):
            x, y = windows(self.data.val, mine[i:i + B], T, self.device)
            total += next_token_loss(self.model, (x, y)).float() * len(x)
        from .trainer import _mean_over_ranks

        return {"val_loss": _mean_over_ranks(total / len(mine)).item()}

    def save_checkpoint(self, trainer) -> Path | None:
        from .checkpoint import save_checkpoint

        if not self.dist.main:
            return None
        return save_checkpoint(self.out, self.model, self.model_cfg, trainer.state_dict(), self.cfg.keep_checkpoints)

    # -- the run folder

    def write_run_folder(self, data_dir: Path, resumed: bool) -> None:
        from .checkpoint import TRAIN_CONFIG
        from .io import read_json, write_json

        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / TRAIN_CONFIG, self.cfg.to_dict())
        self.tokenizer.save(self.out)
        write_json(self.out / "data_manifest.json", read_json(Path(data_dir) / "manifest.json"))
        write_json(self.out / "run.json", {
            "version": code_version(), "command": sys.argv, "python": sys.version.split()[0],
            "torch": torch.__version__, "device": self.device, "world_size": self.dist.world_size,
            "model": self.model_cfg.to_dict(), "parameters": self.model.num_params(), "resumed": resumed,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        })

    def make_callbacks(self) -> list:
        callbacks: list = []
        if self.cfg.max_seconds:
            callbacks.append(TimeLimit(self.cfg.max_seconds))
        if self.dist.main:
            callbacks.append(MetricsLog(self.out, keep_until=self.started, log=self.log))
            if self.cfg.progress:
                callbacks.append(ProgressBar(self.cfg.max_steps, self.started))
        if self.cfg.track_qk:
            if self.dist.main:
                callbacks.append(make_qk_tracker(self.out, self.model, self.tokenizer, self.cfg.track_qk))
        return callbacks

    def sample(self) -> str:
        from .commands.sample import sliding_stream
        from .generate import SampleConfig

        cfg = SampleConfig(max_new_tokens=self.cfg.sample_tokens, temperature=self.cfg.sample_temperature,
                           seed=self.cfg.seed)
        self.model.eval()
        prompt = self.cfg.sample_prompt or "\n"
        try:
            self.tokenizer.encode(prompt)
        except GlassError:
            prompt = self.tokenizer.decode([0])
        return prompt + "".join(sliding_stream(self.model, self.tokenizer, prompt, cfg))


def compile_blocks(model) -> None:
    """torch.compile each block and the unembedding in place (the weights keep their names; the token
    checks in GPT.forward stay eager, where they cannot force a recompilation for every new batch)."""
    for module in [*model.blocks, model.unembed]:
        module.compile()


def make_qk_tracker(run_dir: Path, model, tokenizer, every: int):
    try:
        from .inspect.qk import QKTracker
    except ImportError:
        raise GlassError("--track-qk needs glassgpt.inspect.qk, which is not in this installation") from None
    return QKTracker(run_dir=run_dir, model=model, tokenizer=tokenizer, every=every)


# ----------------------------------------------------------------------------- callbacks: time limit, log, plot, bar


class TimeLimit:
    def __init__(self, seconds: float):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def on_step(self, trainer, step, metrics) -> None:
        if time.perf_counter() - self.t0 >= self.seconds:
            trainer.should_stop = True


class MetricsLog:
    """metrics.jsonl (one JSON object per step and per evaluation) and loss.png, redrawn at every evaluation."""

    def __init__(self, run_dir: Path, keep_until: int = 0, log=say):
        from .io import write_atomic

        self.path, self.png, self.log = Path(run_dir) / "metrics.jsonl", Path(run_dir) / "loss.png", log
        self.records: list[dict] = []
        if self.path.is_file():  # resuming: keep what happened up to the checkpoint, drop the rest
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if rec.get("step", 0) <= keep_until:
                    self.records.append(rec)
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.file = open(self.path, "a", encoding="utf-8")  # appended line by line, flushed each step
        self.t0 = time.time()

    def _write(self, rec: dict) -> None:
        self.records.append(rec)
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()

    def on_step(self, trainer, step, metrics) -> None:
        self._write({"step": step, **{k: round(v, 6) for k, v in metrics.items()}, "time": round(time.time() - self.t0, 3)})

    def on_eval(self, trainer, step, metrics) -> None:
        self._write({"step": step, **metrics, "time": round(time.time() - self.t0, 3)})
        self.log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        plot_losses(self.records, self.png)

    def on_end(self, trainer) -> None:
        plot_losses(self.records, self.png)
        self.file.close()


def plot_losses(records: list[dict], path: Path, title: str = "") -> None:
    """Train loss per step (and its moving average) and validation loss per evaluation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import write_atomic

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        k = max(1, len(losses) // 50)
        smooth = [sum(losses[max(0, i - k + 1):i + 1]) / len(losses[max(0, i - k + 1):i + 1]) for i in range(len(losses))]
        ax.plot(steps, smooth, color="tab:blue", label="train")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "next-token loss")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_atomic(path, buf.getvalue())


class ProgressBar:
    def __init__(self, total: int, start: int):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr, mininterval=0.5)
        self.val: float | None = None

    def on_step(self, trainer, step, metrics) -> None:
        post = {"loss": f"{metrics['loss']:.3f}", "tok/s": f"{metrics.get('tokens_per_s', 0):,.0f}"}
        if self.val is not None:
            post["val"] = f"{self.val:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_eval(self, trainer, step, metrics) -> None:
        self.val = metrics.get("val_loss", self.val)

    def on_end(self, trainer) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- the entry point


def train(cfg: TrainConfig, resume: str | None = None, latest_good: bool = False, log=say) -> Run:
    """Set up the run, train, write the last checkpoint and plot; returns the Run (model, trainer, folder)."""
    run = Run(cfg, resume=resume, latest_good=latest_good, log=log)
    if run.dist.main:
        n = run.model.num_params()
        log(f"run folder {run.out} | {n / 1e6:.2f}M parameters | {run.device} × {run.dist.world_size} | "
            f"{run.data.manifest['name']}: {run.data.manifest['split']['train_tokens']:,} train tokens")
    try:
        run.trainer.fit()
        barrier(run.dist)  # every rank done before the group goes
    finally:
        shutdown_distributed(run.dist)
    return run
