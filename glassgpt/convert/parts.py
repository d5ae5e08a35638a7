"""What a converter hands back: plain parts of a model read from a file. glassgpt.load alone turns them
into a `Loaded` (so converters never import the loader, and the layers point one way)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ModelConfig
from ..errors import CheckpointError
from ..model import GPT, RoPE


@dataclass
class ModelParts:
    config: ModelConfig
    tokenizer: object  # glassgpt.tokenizer.Tokenizer
    model: GPT  # its weights from the file (model_from_weights below, or packed by glassgpt.fast)
    chat_template: str | None = None  # Jinja, when the model has one
    bos_token: str | None = None
    eos_token: str | None = None
    stop_ids: list[int] = field(default_factory=list)  # token ids that end a generation
    metadata: dict = field(default_factory=dict)


def empty_model(cfg: ModelConfig) -> GPT:
    """A GPT with no weight memory yet (built on the meta device), its RoPE tables real and shared."""
    with torch.device("meta"):
        model = GPT(cfg)
    rope = RoPE(cfg.d_head, cfg.n_ctx, cfg.rope_theta)  # one table for every layer
    for m in model.modules():
        if isinstance(m, RoPE):
            m.cos, m.sin = rope.cos, rope.sin
    return model


def model_from_weights(cfg: ModelConfig, weights: dict[str, torch.Tensor], source: str,
                       name_in_file=lambda ours: ours) -> GPT:
    """The GPT holding `weights` (glassgpt's names; checked against the config's names and shapes, not copied)."""
    model = empty_model(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} tensor(s) missing, e.g. {name_in_file(missing[0])}")
    for name, t in weights.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{source}: tensor for {name} has shape {tuple(t.shape)}, "
                                  f"expected {tuple(expected[name].shape)}")
    model.load_state_dict(weights, strict=True, assign=True)
    return model.eval()
