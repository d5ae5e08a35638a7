"""transformers-style doors for people used to it: `from_pretrained`, `save_pretrained`, `generate`.

    from glassgpt import PretrainedGPT

    model = PretrainedGPT.from_pretrained("smollm2")      # or a GGUF, a Hugging Face folder, a run folder
    model.generate("The capital of France is", max_new_tokens=8, temperature=0)   # → ' Paris. …'
    model.save_pretrained("smol-hf")                      # a Hugging Face folder transformers loads

Each door is a thin call onto what glassgpt already has: `glassgpt.load.load_model`, the
exporters of `glassgpt export` (format "hf", "gguf" or "safetensors") and `glassgpt.generate`.
PretrainedGPT *is* a glassgpt GPT (same forward pass, same hooks) that also keeps the tokenizer
and chat template it came with. The model itself (glassgpt.model) knows nothing of this module.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .chat import Chat
from .convert.export import export_hf, export_safetensors
from .convert.gguf_write import export_gguf
from .generate import SampleConfig, generate
from .load import load_model
from .model import GPT


class PretrainedGPT(GPT):
    """A GPT loaded from a file, with its tokenizer: the three doors below, and everything GPT has."""

    loaded = None  # glassgpt.load.Loaded: tokenizer, chat template, special tokens, where it came from

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, weights: str = "fp32") -> "PretrainedGPT":
        """load_model(path, weights) as a PretrainedGPT. path: a GGUF file, a Hugging Face folder, a glassgpt run
        folder, or None / "smollm2" for SmolLM2-135M-Instruct."""
        loaded = load_model(path, weights)
        model = loaded.model
        model.__class__ = cls  # the same module and weights; only these methods are added (the class adds no state)
        model.loaded = loaded
        return model

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    def generate(self, prompt: str, max_new_tokens: int = 50, temperature: float = 1.0, chat: bool = False,
                 **sampling) -> str:
        """The continuation of prompt as text (glassgpt.generate.generate). chat=True wraps the prompt as a user
        message in the model's chat template. sampling: top_k, top_p, min_p, repetition_penalty, seed, stop_strings."""
        cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                           stop_ids=tuple(self.loaded.stop_ids), **sampling)
        if chat:
            session = Chat(self.loaded, sample=cfg, messages=[{"role": "user", "content": prompt}])
            prompt = session.prompt_text()
            cfg = replace(cfg, stop_strings=tuple(cfg.stop_strings) + (() if self.loaded.chat_template else
                                                                         ("\nUser:",)))
        return generate(self, self.loaded.tokenizer, prompt, cfg)

    def save_pretrained(self, folder: str | Path, format: str = "hf", gguf_type: str = "f16") -> list[Path]:
        """Write the model and its tokenizer as `glassgpt export --format FORMAT` does: "hf" (a transformers
        folder), "gguf" (folder/model.gguf) or "safetensors" (glassgpt's own names)."""
        folder = Path(folder)
        if format == "hf":
            return export_hf(self.loaded, folder)
        if format == "gguf":
            return [export_gguf(self.loaded, folder, gguf_type)]
        if format == "safetensors":
            return export_safetensors(self.loaded, folder)
        raise ValueError(f"format must be hf, gguf or safetensors, got {format!r}")
