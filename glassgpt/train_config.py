"""TrainConfig: every knob of a `glassgpt train` run, with its defaults in code.

    TrainConfig()  →  a TOML file (--config FILE, or a bundled one in glassgpt/configs/)  →  --key=value

The model is a preset (glassgpt.config.PRESETS); each model field here is None unless set, and a field
that is set replaces the preset's. The reading and type checks are glassgpt.configfile's, shared with seq2seq.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import configfile
from .config import PRESETS, ModelConfig, preset
from .errors import GlassError

BUNDLED = Path(__file__).parent / "configs"
MODEL_FIELDS = ("n_layers", "n_heads", "d_model", "n_ctx", "d_mlp", "n_kv_heads", "positions", "norm", "mlp",
                "dropout", "attn_bias", "mlp_bias", "tie_embeddings", "rope_theta")


@dataclass
class TrainConfig:
    """The defaults pre-train a character-level model (the `tiny` preset) on Shakespeare in about five
    minutes on 2 CPU cores (configs/shakespeare-char.toml names the same run)."""

    # data
    data: str = "shakespeare"  # a recipe (shakespeare, python-stdlib), a text file or folder, or a prepared folder
    tokenizer: str = "char"  # char | bpe | bpe:VOCAB
    val_fraction: float = 0.1  # the last 10% of the text
    # model: a preset; any field below that is set (not None) replaces the preset's
    preset: str = "tiny"
    n_layers: int | None = None
    n_heads: int | None = None
    d_model: int | None = None
    n_ctx: int | None = None
    d_mlp: int | None = None
    n_kv_heads: int | None = None
    positions: str | None = None
    norm: str | None = None
    mlp: str | None = None
    dropout: float | None = None
    attn_bias: bool | None = None
    mlp_bias: bool | None = None
    tie_embeddings: bool | None = None
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
    optimizer: str = "adamw"  # adamw | muon (Muon on the blocks' matrices, AdamW on the rest: glassgpt.trainer)
    muon_lr: float = 0.02  # Muon's peak learning rate (optimizer = "muon"), on lr's warmup and decay
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
        for f in dataclasses.fields(self):  # NaN passes every comparison below, inf most of them
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise GlassError(f"config key {f.name} must be a finite number, got {value}")
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
        if not self.muon_lr > 0:
            raise GlassError(f"config key muon_lr must be positive, got {self.muon_lr}")
        if self.optimizer not in ("adamw", "muon"):
            raise GlassError(f"config key optimizer must be adamw or muon, got {self.optimizer!r}")
        if self.min_lr > self.lr:
            raise GlassError(f"config key min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if not 0 < self.val_fraction < 1:
            raise GlassError(f"config key val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.sample_temperature < 0:
            raise GlassError(f"config key sample_temperature must be >= 0, got {self.sample_temperature}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise GlassError(f"config key dropout must be in [0, 1), got {self.dropout}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise GlassError(f"config keys beta1, beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.dtype not in ("float32", "bfloat16"):
            raise GlassError(f"config key dtype must be float32 or bfloat16, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise GlassError(f"config key device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.preset not in PRESETS:
            raise GlassError(f"config key preset: unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")

    def model_config(self, d_vocab: int | None = None) -> ModelConfig:
        """The preset, with every model field that is set here replacing the preset's (d_vocab: the tokenizer's)."""
        changes = {k: getattr(self, k) for k in MODEL_FIELDS if getattr(self, k) is not None}
        if "n_heads" in changes and "n_kv_heads" not in changes:
            changes["n_kv_heads"] = changes["n_heads"]  # a new head count: plain multi-head unless told otherwise
        if "d_model" in changes and "d_mlp" not in changes:
            changes["d_mlp"] = 4 * changes["d_model"]
        if d_vocab is not None:
            changes["d_vocab"] = d_vocab
        try:
            return preset(self.preset).replace(**changes)
        except (ValueError, TypeError) as e:
            raise GlassError(f"model config: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> dict[str, Any]:
        """to_dict() with the model fields the preset fills in (what --show-config prints)."""
        values = self.to_dict()
        if self.init_from == "scratch":
            model = self.model_config()
            values.update({k: getattr(model, k) for k in MODEL_FIELDS})
        return values


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """['--max-steps=100', '--compile'] → {'max_steps': 100, 'compile': True}, checked against TrainConfig."""
    return configfile.parse_overrides(TrainConfig, args)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML file of TrainConfig keys (or the name of a bundled config: shakespeare-char, speedrun, ...)."""
    return configfile.read_toml(TrainConfig, path, BUNDLED)


def bundled_configs() -> list[str]:
    return configfile.bundled_names(BUNDLED)


def make_config(config_file: str | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None, base_source: str = "saved config") -> TrainConfig:
    """TrainConfig from its defaults, then a saved run's config (base, read from base_source), then a TOML
    file, then overrides."""
    cfg = configfile.make(TrainConfig, config_file, overrides, base, BUNDLED, base_source)
    cfg.validate()
    return cfg
