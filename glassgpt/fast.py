"""Speed tricks kept behind a wall: how the weights are stored for decoding, never the maths.

Decoding one token reads every weight once, so on a CPU its speed limit is memory bandwidth ÷
bytes of weights. A weight *mode* says how the layers' matrices are stored (glassgpt.quant):

    fp32   exact: what inspection and training want
    fp16   half-precision copies (the half-precision matrix-vector kernel; fast on some CPUs only)
    bf16   bfloat16 copies
    int8   8-bit codes, a scale per 32 weights (GGUF's Q8_0)
    int4   4-bit codes, a scale and a minimum per 32 weights: GGUF's Q4_1, so a Q4_1 file loads
           with no rounding beyond its own
    q4a8   int4's weights, activations rounded once to 8 bits per block of 32 (llama.cpp's maths)

int8, int4 and q4a8 store the unembedding as 8-bit blocks too (a GGUF's own Q8_0 token_embd
exactly), multiply through glassgpt.quant.BlockWeight (one AVX-512 VNNI kernel where the CPU has
it), and round the activations to two int8 passes (q4a8: one), which keeps x within |x|max/127²
per block of 32. The other modes keep the unembedding float32, stored (d_model, d_vocab)
row-major, the layout whose matrix-vector product runs fastest here. Whatever the mode, logits
are accumulated and returned in float32: a half-precision unembedding rounds logits 0.004 apart
onto one value and greedy decoding then picks the wrong one of the two. The embedding lookup
reads one row per token (no bandwidth): from a float32 W_E, or, in the block modes of a tied model
whose 8-bit blocks hold W_E exactly (a GGUF's own Q8_0 token_embd), from those blocks
(glassgpt.quant.BlockRows), so no float32 copy of W_E is kept.

`pack_model(model, mode)` converts a loaded float32 model in place. `read_gguf_packed(path, mode)`
builds the packed model straight from a GGUF file, one tensor at a time (no transient float32
copy of the whole model), and keeps the result in a cache of safetensors files keyed by the
file's sha256, so a second load only maps the file into memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from . import kernels
from .config import ModelConfig
from .convert import gguf as G
from .convert.parts import ModelParts
from .errors import CheckpointError, GlassError
from .fetch import cache_dir, sha256_file
from .model import GPT, RoPE
from .progress import say, status
from .quant import (BlockRows, BlockWeight, FullWeight, HalfWeight, Int4Weight, Int8Weight, PackedWeight, q4_1_codes,
                    q8_0_codes)
from .tokenizer import BPETokenizer, hf_from_json

MODES = ("fp32", "fp16", "bf16", "int8", "int4", "q4a8")
DEFAULT_MODE = "int4"  # chat and generate: the GGUF's own blocks, 24/24 answers like fp32, fewest bytes (README, Speed)
CACHE_VERSION = 5  # bump when the stored layout changes (4: W_E as rows of the unembedding's blocks; 5: RoPE's table)


BLOCK_MODES = {"int8": (8, 2), "int4": (4, 2), "q4a8": (4, 1)}  # mode: (bits of the layers' codes, activation passes)


def _packer(mode: str):
    """mode → a function packing one float32 matrix W (d_in, d_out) for the layers."""
    if mode == "fp16":
        return lambda W: HalfWeight(W, torch.float16)
    if mode == "bf16":
        return lambda W: HalfWeight(W, torch.bfloat16)
    if mode in BLOCK_MODES:
        bits, terms = BLOCK_MODES[mode]
        return lambda W: BlockWeight.quantize(W, bits, terms=terms) if _blockable(W.shape) else FullWeight(W)
    raise GlassError(f"weights must be one of {', '.join(MODES)}, got {mode!r}")


def _blockable(shape) -> bool:
    d_in, d_out = shape
    return d_in % 32 == 0 and d_out % 16 == 0


def layer_matrices(model: nn.Module):
    """(module, name) of every weight matrix multiplied in a block: W_Q, W_K, W_V, W_O, W_gate, W_up, W_down."""
    for module in model.modules():
        for name in ("W_Q", "W_K", "W_V", "W_O", "W_gate", "W_up", "W_down"):
            if getattr(module, name, None) is not None and name in module._parameters | module._modules:
                yield module, name


@torch.no_grad()
def pack_model(model: nn.Module, mode: str) -> nn.Module:
    """Store a float32 model's layer matrices (and, in the block modes, its unembedding) in `mode`, in place."""
    mode = mode or "fp32"
    if mode != "fp32":
        pack = _packer(mode)
        for module, name in layer_matrices(model):
            W = getattr(module, name)
            if isinstance(W, torch.Tensor):
                _swap(module, name, pack(W.detach()))
    if mode in BLOCK_MODES and _blockable(model.W_U.shape):
        _swap(model.unembed, "W_U", BlockWeight.quantize(model.W_U.detach(), 8, terms=BLOCK_MODES[mode][1]))
        rows_from_blocks(model)
    else:
        row_major_unembedding(model)
    model.weights_mode = mode
    return model


def rows_from_blocks(model: nn.Module) -> None:
    """A tied model whose 8-bit unembedding holds W_E exactly (a Q8_0 file's own blocks, re-rounded to the same
    codes) reads its embedding rows from those blocks and drops the float32 W_E; otherwise W_E stays."""
    embed, W_U = getattr(model, "embed", None), model.unembed.W_U
    if embed is None or not model.cfg.tie_embeddings or not isinstance(W_U, BlockWeight) or W_U.bits != 8:
        return
    rows = BlockRows(W_U)
    if isinstance(embed.W_E, torch.Tensor) and torch.equal(rows.dequantize(), embed.W_E.detach()):
        _swap(embed, "W_E", rows)


def row_major_unembedding(model: nn.Module) -> None:
    """A tied W_E (d_vocab, d_model) stored as the transpose of a (d_model, d_vocab) row-major array:
    the same values and the same lookups, but logits = x·W_Eᵀ reads it in its fast layout."""
    embed = getattr(model, "embed", None)
    if embed is None or not getattr(model.cfg, "tie_embeddings", False) or model.unembed.W_U is not None:
        return
    W_E = embed.W_E
    if W_E.T.is_contiguous():
        return
    embed.W_E = nn.Parameter(W_E.detach().float().T.contiguous().T, requires_grad=W_E.requires_grad)


def _swap(module: nn.Module, name: str, packed: nn.Module) -> None:
    """Replace the parameter `name` by a packed weight module of the same name."""
    if name in module._parameters:
        del module._parameters[name]
    setattr(module, name, packed)


def weights_mode(model: nn.Module) -> str:
    return getattr(model, "weights_mode", "fp32")


def weights_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and packed weight (what the model holds in memory)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(m.nbytes for m in model.modules() if isinstance(m, PackedWeight))
    return total


def decode_bytes(model: nn.Module) -> int:
    """Bytes one decode step reads: every weight, less a float32 W_E when a packed unembedding replaces it in
    the logits (then W_E only gives one row per token). Bandwidth ÷ this is the mode's speed ceiling."""
    total = weights_bytes(model)
    if isinstance(model.unembed.W_U, PackedWeight) and model.cfg.tie_embeddings and \
            isinstance(model.embed.W_E, torch.Tensor):
        total -= model.embed.W_E.numel() * model.embed.W_E.element_size()
    return total


def kernel_report(model: nn.Module) -> dict:
    """Which kernel each kind of packed weight runs on this machine (recorded beside speed numbers)."""
    kinds = sorted({type(m).__name__ for m in model.modules() if isinstance(m, PackedWeight)})
    out = {"mode": weights_mode(model), "packed": kinds}
    if "BlockWeight" in kinds:
        out["blockdot"] = kernels.kernel()
        out["blockdot_why"] = kernels.why()
    return out


# ----------------------------------------------------------------------------- from a GGUF file


def read_gguf_packed(path: str | Path, mode: str, cache: bool = True) -> ModelParts:
    """A GGUF file → its parts (glassgpt.convert.parts) with the layer matrices in `mode`, through the cache
    when allowed; glassgpt.load.load_model makes a Loaded of them.

    A cache hit reads neither the GGUF's metadata nor its tensors: the safetensors file holds the
    converted weights and, in its header, the config, the tokenizer and the chat template.
    """
    path = Path(path)
    _packer(mode) if mode != "fp32" else None  # an unknown mode fails before any work
    stored = cache_path(path, mode) if cache else None
    if stored is not None and stored.is_file():
        parts = _load_cache(stored, path, mode)
        if parts is not None:
            release_free_memory()
            return parts
    reader = G.read_gguf(path)
    try:
        meta = G.metadata(reader)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable GGUF metadata ({G._first_line(e)})") from None
    cfg = G.config_from_gguf(meta, path)
    if meta.get("general.architecture") != "llama":  # (gpt2's fused QKV: the converter's own path, then packed)
        parts = G.read_gguf_model(path)
        pack_model(parts.model, mode)
        parts.metadata["weights"] = mode
        if stored is not None:
            _save_cache(parts, stored)
        return parts
    raw = {t.name: t for t in reader.tensors}
    cfg = cfg.replace(tie_embeddings="output.weight" not in raw)
    G.check_gguf_tensors(reader, meta, cfg, path)  # the metadata's sizes against the tensors, before allocating
    tokenizer, bos, eos = G.tokenizer_from_gguf(meta, path)
    model = bare_model(cfg)
    with status(f"dequantising {path.name} into {mode} weights" + (" (once: kept in the cache)" if stored else "")):
        _fill_from_gguf(model, raw, cfg, mode, path)
    model.eval()
    model.weights_mode = mode
    types = sorted({t.tensor_type.name for t in reader.tensors})
    info = {"architecture": meta.get("general.architecture"), "name": meta.get("general.name"),
            "tensor_types": types, "file_type": meta.get("general.file_type"), "weights": mode}
    parts = ModelParts(cfg, tokenizer, model, meta.get("tokenizer.chat_template"), bos, eos,
                       G.stop_ids_from_gguf(meta, tokenizer), info)
    if stored is not None:
        _save_cache(parts, stored)
    del reader, raw
    release_free_memory()
    return parts


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). A load frees
    tens of MB in small pieces — the tokenizer's JSON parsed, the GGUF's metadata, per-tensor buffers — which
    would otherwise stay in RSS for the whole session (22 MB on SmolLM2's cached load, benchmarks/memory.py)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def bare_model(cfg, rope_table: tuple[torch.Tensor, torch.Tensor] | None = None):
    """A GPT whose weights are allocated but neither initialised nor touched (so they take no memory
    until written): cheaper than building it on the meta device, which imports half of torch.

    rope_table: RoPE's cos and sin as a converted-weights cache stored them, taken instead of computed. The
    table's arithmetic (arange, pow, reciprocal, outer, cos, sin) is a load's only use of those operations:
    their code, paged in for it, stayed resident for the whole chat (1.4 MB of libtorch, benchmarks/memory.py).
    The model is built with an empty table (RoPE grows its table on demand, so an empty one is valid), then
    given the stored one."""

    class Bare(GPT):
        def init_weights(self, std: float = 0.02) -> None:
            pass

    first = RoPE.FIRST
    if rope_table is not None:
        RoPE.FIRST = 0  # RoPE.__init__ tabulates min(n_ctx, FIRST) positions: none
    try:
        model = Bare(cfg)
    finally:
        RoPE.FIRST = first
    model.__class__ = GPT
    rope = _rope(model)
    if rope_table is not None and rope is not None:
        rope.cos, rope.sin = rope_table  # (n, d_head) each, n <= n_ctx: the rows a fresh table has (tests)
    return model


def _fill_from_gguf(model: nn.Module, raw: dict, cfg, mode: str, path: Path) -> None:
    """Every tensor read and stored in its final form, one at a time."""
    known = {theirs for _, theirs, _ in G._expand(cfg.n_layers, "llama")}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{path}: tensor {unknown[0]} is not part of the llama architecture glassgpt "
                              f"loads ({len(unknown)} such tensor(s))")
    heads = {"q": cfg.n_heads, "k": cfg.n_kv_heads}
    pack = None if mode == "fp32" else _packer(mode)
    expected = dict(model.state_dict())
    placed = set()
    for ours, theirs, how in G._expand(cfg.n_layers, "llama"):
        if theirs not in raw or (ours == "unembed.W_U" and cfg.tie_embeddings):
            continue
        t = raw[theirs]
        module_name, _, leaf = ours.rpartition(".")
        module = model.get_submodule(module_name)
        if ours not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {theirs}")
        shape = tuple(expected[ours].shape)
        if pack is not None and leaf in ("W_Q", "W_K", "W_V", "W_O", "W_gate", "W_up", "W_down"):
            d_out, d_in = shape[1], shape[0]
            own = _own_blocks(t, mode, (d_out, d_in), how, heads, path)
            if own is not None:
                _swap(module, leaf, own)
            else:
                W = _matrix(t, how, heads, shape, path, G)
                _swap(module, leaf, pack(W))
        else:
            unembedding = ours == "unembed.W_U" or (ours == "embed.W_E" and cfg.tie_embeddings)
            d_vocab_d_model = shape if ours == "embed.W_E" else shape[::-1]  # W_Uᵀ's shape, GGUF's rows
            blocked = unembedding and mode in BLOCK_MODES and _blockable(d_vocab_d_model[::-1])
            if blocked:  # the logits from 8-bit blocks
                own = _own_blocks(t, mode, d_vocab_d_model, how, heads, path, unembedding=True)
                if own is not None and ours == "embed.W_E":  # tied, the file's own Q8_0: W_E's rows come from it
                    _swap(model.unembed, "W_U", own)
                    _swap(module, leaf, BlockRows(own))
                    placed.add(ours)
                    continue
                W = _matrix(t, how, heads, shape, path, G)
                W_U = W.T if ours == "embed.W_E" else W  # (d_model, d_vocab)
                _swap(model.unembed, "W_U", own or BlockWeight.quantize(W_U, 8, terms=BLOCK_MODES[mode][1]))
                if ours == "unembed.W_U":
                    placed.add(ours)
                    continue
                del W_U
            else:
                W = _matrix(t, how, heads, shape, path, G)
            if ours == "embed.W_E" and cfg.tie_embeddings and not blocked:
                W = W.T.contiguous().T  # stored (d_model, d_vocab) row-major: see row_major_unembedding
            setattr(module, leaf, nn.Parameter(W, requires_grad=False))
        placed.add(ours)
    missing = sorted(set(expected) - placed)
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} tensor(s) missing, e.g. {missing[0]}")


def _own_blocks(t, mode: str, shape: tuple, how: str, heads: dict, path: Path, unembedding: bool = False):
    """The tensor's own GGUF blocks as a BlockWeight, when the mode keeps them (Q4_1 for int4/q4a8 layers,
    Q8_0 for int8 layers and every block mode's unembedding), else None. shape: (d_out, d_in), GGUF's rows."""
    if mode not in BLOCK_MODES or not _blockable(shape[::-1]):
        return None
    bits, terms = (8, BLOCK_MODES[mode][1]) if unembedding else BLOCK_MODES[mode]
    if t.tensor_type.name == ("Q4_1" if bits == 4 else "Q8_0"):
        blocks = q4_1_codes(t.data, shape[1]) if bits == 4 else q8_0_codes(t.data, shape[1])
    else:
        return None
    if tuple(blocks[0].shape) != shape:
        raise CheckpointError(f"{path}: tensor {t.name} has shape {tuple(blocks[0].shape)[::-1]}, expected {shape[::-1]}")
    if how[-1:] in heads:
        blocks = tuple(G.unpermute_rope_rows(x, heads[how[-1]]) for x in blocks)
    if bits == 4:
        return BlockWeight(*blocks, bits=4, terms=terms)
    return BlockWeight.from_q8_0(*blocks, terms=terms)


def _matrix(t, how: str, heads: dict, shape: tuple, path: Path, G) -> torch.Tensor:
    x = G.dequantize(t, path)  # one tensor in float32, numpy order
    if how[-1:] in heads:
        x = G.unpermute_rope_rows(x, heads[how[-1]])
    if how.startswith("T"):
        x = x.T
    if tuple(x.shape) != shape:
        raise CheckpointError(f"{path}: tensor {t.name} has shape {tuple(x.shape)}, expected {shape}")
    return x.contiguous()


# ----------------------------------------------------------------------------- the converted-weights cache


def cache_path(path: Path, mode: str) -> Path:
    key = f"{sha256_file(path, f'hashing {path.name}')}-{mode}-v{CACHE_VERSION}-torch{torch.__version__.split('+')[0]}"
    return cache_dir() / "converted" / f"{key}.safetensors"


def _save_cache(loaded, stored: Path) -> None:
    """Every parameter and packed buffer under its module path in one safetensors file (written atomically),
    with what else a Loaded needs in the header."""
    import json

    from safetensors.torch import save_file

    model = loaded.model
    tensors = {}
    rope = _rope(model)
    if rope is not None:  # (not in the state dict: a table the model computes; stored, a load needs no arithmetic)
        tensors["rope.cos"], tensors["rope.sin"] = rope.cos.contiguous(), rope.sin.contiguous()
    for name, t in model.state_dict().items():
        if name == "embed.W_E" and t.T.is_contiguous() and not t.is_contiguous():
            t = t.T  # (d_model, d_vocab): the logits' fast layout, so a load needs no copy
        tensors[name] = t.detach().contiguous()
    kinds = {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, PackedWeight)}
    rows = isinstance(model.embed.W_E, BlockRows)
    header = {"version": CACHE_VERSION, "config": model.cfg.to_dict(), "kinds": kinds,
              "chat_template": loaded.chat_template, "W_E_rows_of_W_U": rows,
              "W_E_transposed": not rows and tensors["embed.W_E"].shape != model.embed.W_E.shape,
              "bos_token": loaded.bos_token, "eos_token": loaded.eos_token, "stop_ids": list(loaded.stop_ids),
              "info": loaded.metadata}
    metadata = {"glassgpt": json.dumps(header), "tokenizer": loaded.tokenizer.tok.to_str()}
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_suffix(f".{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, stored)
        sha, mode = stored.name.split("-")[:2]
        for old in stored.parent.glob(f"{sha}-{mode}-v*.safetensors"):  # other layouts of this file and mode
            if old.name.split("-")[2] != f"v{CACHE_VERSION}":
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache folder: no cache, the next load converts again


def _small_copied(t: torch.Tensor) -> torch.Tensor:
    """A tensor of the mapped cache file, copied if it is smaller than a page: Linux maps 64 KB of a file around
    a touched page, so a norm's 2 KB (or a BlockWeight's one-byte `passes`) read from the file kept 64 KB of it
    resident (2 MB in all on SmolLM2 int4); copied, they take 0.1 MB, and once the block weights have moved
    to 2 MB pages (kernels.huge_pages) no tensor holds the file's mapping any more."""
    return t.clone() if t.numel() * t.element_size() < 4096 else t


def _rope(model):
    """The model's RoPE (one table shared by every layer), or None."""
    return next((m for m in model.modules() if isinstance(m, RoPE)), None)


def _rope_table(tensors: dict, cfg) -> tuple[torch.Tensor, torch.Tensor] | None:
    """RoPE's cos and sin from a cache file's tensors (copied out of the mapping: 2 x 256 KB on SmolLM2),
    checked against the config before use; None for a model without RoPE."""
    if cfg.positions != "rope":
        return None
    cos, sin = tensors.pop("rope.cos"), tensors.pop("rope.sin")
    for t in (cos, sin):
        if t.dtype != torch.float32 or t.dim() != 2 or t.shape[1] != cfg.d_head or not 0 < t.shape[0] <= cfg.n_ctx:
            raise ValueError(f"RoPE table of shape {tuple(t.shape)} and {t.dtype} for d_head {cfg.d_head}")
    if cos.shape != sin.shape:
        raise ValueError("RoPE's cos and sin tables differ in shape")
    return cos.clone(), sin.clone()


def _load_cache(stored: Path, path: Path, mode: str):
    """The converted model, its tensors memory-mapped from the cache file; None when the file is unreadable
    or of another layout (then the GGUF is converted again and the file replaced)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(stored), framework="pt") as f:
            header = json.loads(f.metadata()["glassgpt"])
            tok = hf_from_json(f.metadata()["tokenizer"])
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if header.get("version") != CACHE_VERSION:
            raise ValueError(f"cache layout {header.get('version')}, expected {CACHE_VERSION}")
        cfg = ModelConfig.from_dict(header["config"])
        rope_table = _rope_table(tensors, cfg)
    except Exception as e:
        say(f"{stored.name}: unreadable converted-weights cache ({str(e)[:200]}); converting again")
        return None
    model = bare_model(cfg, rope_table)
    classes = {c.__name__: c for c in (BlockWeight, FullWeight, HalfWeight, Int4Weight, Int8Weight)}
    for name, kind in header["kinds"].items():  # packed weights: an empty instance, then its buffers
        module_name, _, leaf = name.rpartition(".")
        packed = classes[kind].__new__(classes[kind])
        PackedWeight.__init__(packed)
        for buf in [k[len(name) + 1:] for k in tensors if k.startswith(name + ".")]:
            t = _small_copied(tensors.pop(f"{name}.{buf}"))
            if t.data_ptr() % 64 and kind != "BlockWeight":  # torch's packed kernels may load whole cache lines:
                t = t.clone()  # an unaligned map crashed _weight_int8pack_mm (a copy is aligned; blockdot.c and
            packed.register_buffer(buf, t)  # step.c load unaligned, so block weights stay mapped, never copied)
        packed.restore()
        _swap(model.get_submodule(module_name), leaf, packed)
    if header["W_E_rows_of_W_U"]:
        _swap(model.embed, "W_E", BlockRows(model.unembed.W_U))
    for name, t in tensors.items():
        module_name, _, leaf = name.rpartition(".")
        t = _small_copied(t)
        if name == "embed.W_E" and header["W_E_transposed"]:  # (a block mode keeps W_E (d_vocab, d_model) row-major:
            t = t.T  # it only gives one row per token then, and a row is a few pages of the mapped file, not all of it)
        setattr(model.get_submodule(module_name), leaf, nn.Parameter(t, requires_grad=False))
    model.eval()
    model.weights_mode = mode
    tokenizer = BPETokenizer(tok, bos=header["bos_token"], eos=header["eos_token"])
    return ModelParts(cfg, tokenizer, model, header["chat_template"], header["bos_token"], header["eos_token"],
                      header["stop_ids"], header["info"])
