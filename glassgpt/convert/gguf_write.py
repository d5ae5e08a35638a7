"""Writing a glassgpt model as a GGUF file that llama.cpp, ollama and transformers' GGUF loader read.

The tensors go through the same key table as reading (`convert/gguf.py`, the Q/K row permutation
redone); the metadata carries the hyperparameters, the byte-level BPE tokenizer (tokens in id
order, merges, which tokens are control tokens) and the chat template.

Tensor types: "f32" (exact), "f16" (matrices in half precision; norms and biases stay f32, as
llama.cpp keeps them) or "q8_0" (matrices in blocks of 32 weights sharing one scale, quantised by
the `gguf` package; a matrix whose rows are not a multiple of 32 long stays f16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import CheckpointError
from ..tokenizer import BPETokenizer
from .gguf import TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED, arch_of, to_gguf_tensors

TYPES = ("f32", "f16", "q8_0")
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7}  # llama.cpp's general.file_type: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0
TOKEN_TYPE_NORMAL = 1


def export_gguf(loaded, out: str | Path, tensor_type: str = "f16") -> Path:
    """A loaded model (glassgpt.load.Loaded) → out/model.gguf, or out itself when it ends in .gguf."""
    out = Path(out)
    path = out if out.suffix == ".gguf" else out / "model.gguf"
    model = loaded.model
    cfg, sd = model.cfg, model.state_dict()
    arch_of(cfg)  # refuse before creating anything
    tokenizer_metadata(loaded.tokenizer, loaded.bos_token, loaded.eos_token)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write_gguf(tmp, cfg, sd, loaded.tokenizer, loaded.chat_template, loaded.bos_token, loaded.eos_token,
                   tensor_type)
        tmp.replace(path)  # the file appears whole, or not at all
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_gguf(path: str | Path, cfg: ModelConfig, state_dict: dict[str, torch.Tensor], tokenizer,
               chat_template: str | None = None, bos: str | None = None, eos: str | None = None,
               tensor_type: str = "f16") -> Path:
    """Write the model (config + weights + tokenizer + chat template) as one GGUF file at path."""
    import gguf

    if tensor_type not in TYPES:
        raise CheckpointError(f"GGUF tensor type must be one of {', '.join(TYPES)}, got {tensor_type!r}")
    arch = arch_of(cfg)  # raises for a model neither llama.cpp architecture holds
    vocab = tokenizer_metadata(tokenizer, bos, eos)
    if len(vocab["tokens"]) != cfg.d_vocab:
        raise CheckpointError(f"the tokenizer has {len(vocab['tokens'])} tokens but the model {cfg.d_vocab} rows: "
                              "GGUF needs one token per row")
    tensors = to_gguf_tensors({k: v.detach().float().cpu() for k, v in state_dict.items()}, cfg)
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(cfg.name or "glassgpt")
    w.add_file_type(FILE_TYPES[tensor_type])
    w.add_context_length(cfg.n_ctx)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.d_mlp)
    w.add_head_count(cfg.n_heads)
    if arch == "llama":
        w.add_head_count_kv(cfg.n_kv_heads)
        w.add_rope_freq_base(cfg.rope_theta)
        w.add_rope_dimension_count(cfg.d_head)
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_vocab_size(cfg.d_vocab)
    else:
        w.add_layer_norm_eps(cfg.norm_eps)
    w.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    w.add_token_merges(vocab["merges"])
    for key, i in (("bos", vocab["bos_id"]), ("eos", vocab["eos_id"])):
        if i is not None:
            getattr(w, f"add_{key}_token_id")(i)
    w.add_add_bos_token(False)  # glassgpt and the chat templates put any BOS in the text themselves
    if chat_template:
        w.add_chat_template(chat_template)
    for name, t in tensors.items():
        array = np.ascontiguousarray(t.numpy().astype(np.float32))
        qtype = _tensor_type(array, tensor_type)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, array)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, array.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tensor_type(array: np.ndarray, tensor_type: str):
    from gguf import GGMLQuantizationType as Q

    if array.ndim < 2 or tensor_type == "f32":
        return Q.F32  # norm gains and biases stay exact
    if tensor_type == "q8_0" and array.shape[-1] % 32 == 0:
        return Q.Q8_0
    return Q.F16


def tokenizer_metadata(tokenizer, bos: str | None, eos: str | None) -> dict[str, Any]:
    """A byte-level BPE tokenizer as GGUF metadata: tokens in id order, their types, merges, pre-tokenizer name."""
    if not isinstance(tokenizer, BPETokenizer):
        raise CheckpointError(f"GGUF stores byte-level BPE tokenizers; this model has a {tokenizer.kind} tokenizer "
                              "(export --format hf keeps it)")
    spec = json.loads(tokenizer.tok.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise CheckpointError(f"GGUF stores byte-level BPE tokenizers; this one is {model.get('type')!r}")
    pre = _pre_tokenizer_name(spec.get("pre_tokenizer"))
    size = tokenizer.vocab_size
    tokens = [tokenizer.id_to_piece(i) for i in range(size)]
    if any(not t for t in tokens):
        raise CheckpointError("the tokenizer's ids are not contiguous; GGUF needs one token per id")
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    types = [TOKEN_TYPE_NORMAL if i not in added else TOKEN_TYPE_CONTROL if added[i].get("special")
             else TOKEN_TYPE_USER_DEFINED for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    bos_id = tokenizer.piece_to_id(bos) if bos else tokenizer.bos_id
    eos_id = tokenizer.piece_to_id(eos) if eos else tokenizer.eos_id
    return {"tokens": tokens, "types": types, "merges": merges, "pre": pre, "bos_id": bos_id, "eos_id": eos_id}


def _pre_tokenizer_name(pre: dict | None) -> str:
    """llama.cpp's name for how the text is cut before BPE: GPT-2's regex, or single digits first ("smollm")."""
    def is_byte_level(p):
        return p and p.get("type") == "ByteLevel" and p.get("use_regex", True) and not p.get("add_prefix_space")

    if is_byte_level(pre):
        return "gpt-2"  # llama.cpp's spelling (it refuses "gpt2")
    if pre and pre.get("type") == "Sequence":
        parts = pre.get("pretokenizers") or []
        if len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits") \
                and is_byte_level(parts[1]):
            return "smollm"
    raise CheckpointError(f"the tokenizer's pre-tokenizer ({json.dumps(pre)[:120]}) has no llama.cpp name "
                          "(GPT-2's byte-level regex, optionally after single digits, does)")
