"""ModelConfig: every size and choice of a glassgpt transformer, in one dataclass.

Glossary of dimension names, used everywhere in glassgpt:

    B        batch size
    T        sequence length (tokens in this forward pass), T <= n_ctx
    S        source sequence length (cross-attention keys and values)
    d_vocab  vocabulary size
    n_ctx    context length: the most tokens attention can see at once (G11)
    d_model  width of the residual stream (one token's vector)
    n_layers number of blocks
    n_heads  query heads per attention layer
    n_kv_heads key/value heads (n_heads for multi-head, fewer for grouped-query)
    d_head   width of one head's query/key/value, d_model // n_heads
    d_mlp    width of the MLP's hidden layer (the "up" space, G5)
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

POSITIONS = ("learned", "rope")
# The largest size of each kind glassgpt builds: far above any model it runs (SmolLM2: n_ctx 8192, GPT-2:
# d_vocab 50257), far below what a file may claim to exhaust memory (a context of 2³¹ tokens asks for a
# RoPE table of gigabytes before the first token is read).
LIMITS = {"d_vocab": 1 << 22, "n_ctx": 1 << 20, "d_model": 1 << 16, "n_layers": 1 << 10, "n_heads": 1 << 10,
          "n_kv_heads": 1 << 10, "d_mlp": 1 << 18}
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


class ConfigFieldError(ValueError):
    """An impossible ModelConfig field. `field` names it, so a file's reader can say it in the file's own words."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message  # message uses bare field names: "n_heads must be ..."
        super().__init__(self.named({}))

    def named(self, labels: dict[str, str]) -> str:
        """The message with each field name replaced by labels[name] (default: ModelConfig.name)."""
        def label(m: re.Match) -> str:
            return labels.get(m.group(0), f"ModelConfig.{m.group(0)}")

        return re.sub(r"\b(" + "|".join(FIELD_NAMES) + r")\b", label, self.message)


@dataclass
class ModelConfig:
    d_vocab: int = 50257
    n_ctx: int = 1024
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int | None = None  # None: same as n_heads (plain multi-head)
    d_mlp: int | None = None  # None: 4 * d_model
    positions: str = "learned"  # "learned" (GPT-2) | "rope" (Llama)
    rope_theta: float = 10000.0
    norm: str = "layernorm"  # "layernorm" (GPT-2) | "rmsnorm" (Llama)
    norm_eps: float = 1e-5
    mlp: str = "gelu"  # "gelu" (tanh approximation, as GPT-2) | "swiglu" (Llama)
    attn_bias: bool = True  # biases on W_Q, W_K, W_V, W_O
    mlp_bias: bool = True  # biases on W_up, W_down (and W_gate)
    tie_embeddings: bool = True  # W_U = W_Eᵀ
    dropout: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Every field possible and within LIMITS; a ConfigFieldError names the first that is not."""
        for name in ("d_vocab", "n_ctx", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigFieldError(name, f"{name} must be a positive integer, got {value!r}")
            if value > LIMITS[name]:
                raise ConfigFieldError(name, f"{name} is {value:,}, more than glassgpt allows ({LIMITS[name]:,})")
        if self.n_heads > self.d_model or self.d_model % self.n_heads:
            raise ConfigFieldError("n_heads", f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_kv_heads > self.n_heads or self.n_heads % self.n_kv_heads:
            raise ConfigFieldError("n_kv_heads", f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
                                                 f"({self.n_kv_heads})")
        if self.positions not in POSITIONS:
            raise ConfigFieldError("positions", f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "rope" and self.d_head % 2:
            raise ConfigFieldError("n_heads", f"d_model / n_heads must be even for RoPE, got {self.d_model} / "
                                              f"{self.n_heads} = {self.d_head}")
        if self.norm not in NORMS:
            raise ConfigFieldError("norm", f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.mlp not in MLPS:
            raise ConfigFieldError("mlp", f"mlp must be one of {MLPS}, got {self.mlp!r}")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigFieldError(name, f"{name} must be a positive finite number, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigFieldError("dropout", f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("attn_bias", "mlp_bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigFieldError(name, f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return from_dict(cls, data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(ModelConfig))


def from_dict(cls: type, data: dict[str, Any], error: type[Exception] = ValueError) -> Any:
    """A config dataclass from a dict (JSON), naming any field the dataclass does not have."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


def _gpt2(**kw: Any) -> ModelConfig:
    return ModelConfig(**{"d_vocab": 50257, "n_ctx": 1024, "positions": "learned", "norm": "layernorm",
                          "mlp": "gelu", "attn_bias": True, "mlp_bias": True, "tie_embeddings": True, **kw})


def _llama(**kw: Any) -> ModelConfig:
    return ModelConfig(**{"positions": "rope", "norm": "rmsnorm", "mlp": "swiglu", "attn_bias": False,
                          "mlp_bias": False, **kw})


PRESETS: dict[str, Any] = {
    "gpt2": lambda: _gpt2(name="gpt2", d_model=768, n_layers=12, n_heads=12),
    "gpt2-medium": lambda: _gpt2(name="gpt2-medium", d_model=1024, n_layers=24, n_heads=16),
    "smollm2-135m": lambda: _llama(name="smollm2-135m", d_vocab=49152, n_ctx=8192, d_model=576, n_layers=30,
                                   n_heads=9, n_kv_heads=3, d_mlp=1536, rope_theta=100000.0, norm_eps=1e-5,
                                   tie_embeddings=True),
    # Small CPU presets (GPT-2 style; the vocabulary is set by the tokenizer at training time).
    "baby": lambda: _gpt2(name="baby", d_vocab=65, n_ctx=64, d_model=128, n_layers=4, n_heads=4),
    "small": lambda: _gpt2(name="small", d_vocab=65, n_ctx=256, d_model=384, n_layers=6, n_heads=6),
    # The default of `glassgpt train`: baby's size with Llama-style blocks (RoPE, RMSNorm, no biases), GELU MLP.
    "tiny": lambda: _llama(name="tiny", d_vocab=65, n_ctx=128, d_model=128, n_layers=4, n_heads=4, mlp="gelu",
                           tie_embeddings=True),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named ModelConfig, optionally with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    cfg = PRESETS[name]()
    return cfg.replace(**overrides) if overrides else cfg
