"""One entry point for every model glassgpt can run: `load_model(spec)`.

spec is a GGUF file (llama architecture), a Hugging Face folder (GPT-2 or Llama:
config.json + safetensors + tokenizer.json), a glassgpt run folder, or None for the
default, SmolLM2-135M-Instruct (glassgpt.fetch: fetched once into the cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import CHECKPOINTS, TRAIN_CONFIG, is_run_folder, latest_checkpoint, load_weights
from .convert.gguf import default_gguf_path, read_gguf_model
from .convert.hf import check_hf_shapes, config_from_hf, load_hf_model, read_hf_folder
from .convert.parts import ModelParts
from .errors import CheckpointError, GlassError
from . import kernels
from .fast import pack_model, read_gguf_packed
from .model import GPT
from .tokenizer import BPETokenizer, Tokenizer, load_tokenizer


@dataclass
class Loaded:
    model: GPT
    tokenizer: Tokenizer
    source: str  # the path it came from
    kind: str  # "gguf" | "hf" | "run"
    chat_template: str | None = None  # Jinja, when the model has one
    bos_token: str | None = None
    eos_token: str | None = None
    stop_ids: list[int] = field(default_factory=list)  # token ids that end a generation
    metadata: dict = field(default_factory=dict)


def loaded_from(parts: ModelParts, source: str | Path, kind: str) -> Loaded:
    """A converter's parts (glassgpt.convert.parts) as a Loaded: the one place a Loaded is made from a file."""
    return Loaded(parts.model, parts.tokenizer, str(source), kind, parts.chat_template, parts.bos_token,
                  parts.eos_token, list(parts.stop_ids), parts.metadata)


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> Loaded:
    """A GGUF file through the converter alone (no cache, no packing): the weights as the file has them."""
    return loaded_from(read_gguf_model(path, dtype), path, "gguf")


def load_packed_gguf(path: str | Path, weights: str = "fp32", cache: bool = True) -> Loaded:
    """A GGUF file with its layer matrices stored for decoding (glassgpt.fast), through the converted-weights cache."""
    loaded = loaded_from(read_gguf_packed(path, weights, cache), path, "gguf")
    kernels.huge_pages(loaded.model)  # the block weights into 2 MB pages: decoding streams them (kernels/__init__.py)
    return loaded


def load_run(path: str | Path) -> Loaded:
    """The model of a glassgpt run's newest checkpoint, with the run's tokenizer."""
    path = Path(path)
    if not is_run_folder(path):
        raise GlassError(f"{path}: not a glassgpt run folder (no {TRAIN_CONFIG} and {CHECKPOINTS}/)")
    ckpt = latest_checkpoint(path, with_optimizer=False)
    model = GPT(ckpt.model_cfg)
    load_weights(model, ckpt.weights, ckpt.path / "model.safetensors")
    model.eval()
    return Loaded(model, load_tokenizer(path), str(path), "run", stop_ids=[],
                  metadata={"checkpoint": str(ckpt.path), "step": ckpt.step})


WEIGHTS = ("fp32", "fp16", "bf16", "int8", "int4", "q4a8")  # glassgpt.fast.MODES


def load_model(spec: str | Path | None = None, weights: str = "fp32") -> Loaded:
    """weights: how the layers' matrices are stored — "fp32" (exact; what inspection and training want)
    or a faster decoding mode of glassgpt.fast ("fp16", "bf16", "int8", "int4"); logits stay float32."""
    if weights not in WEIGHTS:
        raise GlassError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    path = _resolve(spec)
    if path.is_file():
        kind = sniff(path)
        if kind == "gguf" or path.suffix == ".gguf":  # by its magic bytes, whatever its name (ollama's blobs have none)
            return load_packed_gguf(path, weights)  # straight into the final precision, through the converted-weights cache
        if kind == "safetensors":
            raise GlassError(f"{path}: a safetensors file alone has no model config; pass the folder that holds it "
                             "with its config.json (Hugging Face) or model_config.json")
        if kind == "pickle":
            raise GlassError(f"{path}: a PyTorch pickle checkpoint; glassgpt never unpickles (it can run code): "
                             "use a safetensors or GGUF file")
        raise GlassError(f"{path}: not a GGUF file (it starts with {kind!r}), a Hugging Face model folder or a "
                         "glassgpt run folder")
    loaded = _load_folder(path)
    if weights != "fp32":
        pack_model(loaded.model, weights)
        kernels.huge_pages(loaded.model)
    return loaded


def _resolve(spec: str | Path | None) -> Path:
    if spec is None or str(spec) in ("", "smollm2", "default"):
        spec = default_gguf_path()
    path = Path(spec).expanduser()
    if not path.exists():
        raise GlassError(f"model not found: {path}")
    return path


def _load_folder(path: Path) -> Loaded:
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_folder(path)
    if path.is_dir():
        if is_run_folder(path):
            return load_run(path)
    raise GlassError(f"{path}: not a GGUF file, a Hugging Face model folder or a glassgpt run folder")


def sniff(path: Path) -> str | bytes:
    """A file's format from its first bytes: "gguf", "safetensors", "pickle", or the bytes themselves."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise GlassError(f"{path}: cannot read ({e.strerror})") from None
    if head[:4] == b"GGUF":
        return "gguf"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30:
        return "safetensors"  # an 8-byte little-endian header length, then the JSON header
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "pickle"  # torch.save's zip archive, or a bare pickle
    return head[:4]


def load_hf_folder(path: Path) -> Loaded:
    hf_config, sd = read_hf_folder(path)
    cfg = config_from_hf(hf_config, path / "config.json")
    cfg = cfg.replace(name=path.name)
    check_hf_shapes(cfg, {k: tuple(v.shape) for k, v in sd.items()}, path)  # before the model is allocated
    model = GPT(cfg)
    load_hf_model(model, sd)
    model.eval()
    tokenizer = hf_tokenizer(path)
    template, bos, eos = None, None, None
    tc = path / "tokenizer_config.json"
    if tc.is_file():
        import json

        try:
            meta = json.loads(tc.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{tc}: not valid JSON ({e})") from None
        template = meta.get("chat_template")
        bos, eos = _token_text(meta.get("bos_token")), _token_text(meta.get("eos_token"))
    stop_ids = [i for i in [tokenizer.piece_to_id(eos) if eos else tokenizer.eos_id] if i is not None]
    return Loaded(model, tokenizer, str(path), "hf", template, bos, eos, stop_ids)


def hf_tokenizer(path: Path) -> Tokenizer:
    """tokenizer.json, or GPT-2's vocab.json + merges.txt; any other tokenizer is named in the error."""
    if (path / "tokenizer.json").is_file():
        return load_tokenizer(path / "tokenizer.json")
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

        try:
            tok = HFTokenizer(models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt")))
        except Exception as e:  # tokenizers raises bare Exceptions on malformed files
            raise CheckpointError(f"{path}: unreadable vocab.json/merges.txt ({str(e).splitlines()[0][:200]})") from None
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if tok.token_to_id("<|endoftext|>") is not None:
            tok.add_special_tokens(["<|endoftext|>"])
        return BPETokenizer(tok)
    for name, what in (("tokenizer.model", "a SentencePiece tokenizer.model"), ("vocab.txt", "a WordPiece vocab.txt"),
                       ("spiece.model", "a SentencePiece spiece.model")):
        if (path / name).is_file():
            raise CheckpointError(f"{path}: unsupported tokenizer: {what} without tokenizer.json (glassgpt reads "
                                  "tokenizer.json, or GPT-2's vocab.json + merges.txt)")
    raise CheckpointError(f"{path} has no tokenizer.json (nor GPT-2's vocab.json + merges.txt)")


def _token_text(t) -> str | None:
    if isinstance(t, dict):
        return t.get("content")
    return t
