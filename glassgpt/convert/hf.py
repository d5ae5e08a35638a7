"""Hugging Face GPT-2 and Llama checkpoints ↔ glassgpt, each with its whole key map in one table.

Our matrices multiply from the right (y = x·W, shape (d_in, d_out)). GPT-2's Conv1D stores
weights the same way; Llama's nn.Linear stores (d_out, d_in), so those are transposed.
GPT-2 keeps Q, K and V in one matrix (c_attn), split here into W_Q, W_K, W_V.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig
from ..errors import CheckpointError
from ..sizes import check_blocks, check_config, check_shapes

# (ours, theirs, transpose). {i} is the layer index.
GPT2_KEYS: list[tuple[str, str, bool]] = [
    ("embed.W_E", "transformer.wte.weight", False),
    ("embed.W_pos", "transformer.wpe.weight", False),
    ("blocks.{i}.ln1.w", "transformer.h.{i}.ln_1.weight", False),
    ("blocks.{i}.ln1.b", "transformer.h.{i}.ln_1.bias", False),
    # W_Q | W_K | W_V side by side in c_attn.weight (d_model, 3·d_model), split below
    ("blocks.{i}.attn.W_QKV", "transformer.h.{i}.attn.c_attn.weight", False),
    ("blocks.{i}.attn.b_QKV", "transformer.h.{i}.attn.c_attn.bias", False),
    ("blocks.{i}.attn.W_O", "transformer.h.{i}.attn.c_proj.weight", False),
    ("blocks.{i}.attn.b_O", "transformer.h.{i}.attn.c_proj.bias", False),
    ("blocks.{i}.ln2.w", "transformer.h.{i}.ln_2.weight", False),
    ("blocks.{i}.ln2.b", "transformer.h.{i}.ln_2.bias", False),
    ("blocks.{i}.mlp.W_up", "transformer.h.{i}.mlp.c_fc.weight", False),
    ("blocks.{i}.mlp.b_up", "transformer.h.{i}.mlp.c_fc.bias", False),
    ("blocks.{i}.mlp.W_down", "transformer.h.{i}.mlp.c_proj.weight", False),
    ("blocks.{i}.mlp.b_down", "transformer.h.{i}.mlp.c_proj.bias", False),
    ("unembed.norm.w", "transformer.ln_f.weight", False),
    ("unembed.norm.b", "transformer.ln_f.bias", False),
    ("unembed.W_U", "lm_head.weight", True),  # only when untied
]

LLAMA_KEYS: list[tuple[str, str, bool]] = [
    ("embed.W_E", "model.embed_tokens.weight", False),
    ("blocks.{i}.ln1.w", "model.layers.{i}.input_layernorm.weight", False),
    ("blocks.{i}.attn.W_Q", "model.layers.{i}.self_attn.q_proj.weight", True),
    ("blocks.{i}.attn.W_K", "model.layers.{i}.self_attn.k_proj.weight", True),
    ("blocks.{i}.attn.W_V", "model.layers.{i}.self_attn.v_proj.weight", True),
    ("blocks.{i}.attn.W_O", "model.layers.{i}.self_attn.o_proj.weight", True),
    ("blocks.{i}.attn.b_Q", "model.layers.{i}.self_attn.q_proj.bias", False),
    ("blocks.{i}.attn.b_K", "model.layers.{i}.self_attn.k_proj.bias", False),
    ("blocks.{i}.attn.b_V", "model.layers.{i}.self_attn.v_proj.bias", False),
    ("blocks.{i}.attn.b_O", "model.layers.{i}.self_attn.o_proj.bias", False),
    ("blocks.{i}.ln2.w", "model.layers.{i}.post_attention_layernorm.weight", False),
    ("blocks.{i}.mlp.W_gate", "model.layers.{i}.mlp.gate_proj.weight", True),
    ("blocks.{i}.mlp.W_up", "model.layers.{i}.mlp.up_proj.weight", True),
    ("blocks.{i}.mlp.W_down", "model.layers.{i}.mlp.down_proj.weight", True),
    ("blocks.{i}.mlp.b_gate", "model.layers.{i}.mlp.gate_proj.bias", False),
    ("blocks.{i}.mlp.b_up", "model.layers.{i}.mlp.up_proj.bias", False),
    ("blocks.{i}.mlp.b_down", "model.layers.{i}.mlp.down_proj.bias", False),
    ("unembed.norm.w", "model.norm.weight", False),
    ("unembed.W_U", "lm_head.weight", True),  # only when untied
]


def _expand(table: list[tuple[str, str, bool]], n_layers: int) -> list[tuple[str, str, bool]]:
    rows = []
    for ours, theirs, t in table:
        if "{i}" in ours:
            rows += [(ours.format(i=i), theirs.format(i=i), t) for i in range(n_layers)]
        else:
            rows.append((ours, theirs, t))
    return rows


LLAMA_FAMILY = ("llama", "mistral", "qwen2")
GELU_ACTS = ("gelu_new", "gelu_pytorch_tanh")  # GELU with the tanh approximation, glassgpt's `gelu`


def family(hf_config: dict[str, Any]) -> str:
    model_type = hf_config.get("model_type", "")
    if model_type == "gpt2":
        return "gpt2"
    if model_type in LLAMA_FAMILY or "LlamaForCausalLM" in hf_config.get("architectures", []):
        return "llama"
    raise CheckpointError(f"unsupported architecture {model_type!r}: glassgpt loads gpt2 and "
                          f"{'/'.join(LLAMA_FAMILY)} (Llama-style) models")


def with_transformer_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2 as stored on the Hub (GPT2Model's keys: wte.weight, h.0.attn...) → GPT2LMHeadModel's (transformer.…)."""
    if "transformer.wte.weight" in sd or "wte.weight" not in sd:
        return sd
    return {(k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}"): v for k, v in sd.items()}


HF_LABELS = {
    "gpt2": {"d_vocab": "vocab_size", "n_ctx": "n_positions", "d_model": "n_embd", "n_layers": "n_layer",
             "n_heads": "n_head", "d_mlp": "n_inner", "norm_eps": "layer_norm_epsilon"},
    "llama": {"d_vocab": "vocab_size", "n_ctx": "max_position_embeddings", "d_model": "hidden_size",
              "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads",
              "d_mlp": "intermediate_size", "rope_theta": "rope_theta", "norm_eps": "rms_norm_eps"},
}


def config_from_hf(hf: dict[str, Any], source: str | Path = "config.json") -> ModelConfig:
    """A Hugging Face config.json (as a dict) → ModelConfig; a missing or impossible field is named."""
    if not isinstance(hf, dict):
        raise CheckpointError(f"{source}: not a JSON object")
    kind = family(hf)
    labels = HF_LABELS[kind]

    def need(key: str) -> Any:
        if key not in hf:
            raise CheckpointError(f"{source}: lacks the field {key}")
        return hf[key]

    if kind == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in GELU_ACTS:
            raise CheckpointError(f"unsupported GPT-2 activation {act!r} (glassgpt uses tanh-approximated GELU)")
        n_embd = need("n_embd")
        return check_config(lambda: ModelConfig(
            name=hf.get("_name_or_path", "") or "gpt2", d_vocab=need("vocab_size"), n_ctx=need("n_positions"),
            d_model=n_embd, n_layers=need("n_layer"), n_heads=need("n_head"),
            d_mlp=hf.get("n_inner") or (4 * n_embd if isinstance(n_embd, int) else n_embd), positions="learned",
            norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), mlp="gelu", attn_bias=True,
            mlp_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
        ), labels, source)
    heads, hidden = need("num_attention_heads"), need("hidden_size")
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 and \
            hf.get("head_dim") not in (None, hidden // heads):
        raise CheckpointError(f"{source}: head_dim ({hf.get('head_dim')!r}) differs from hidden_size / "
                              "num_attention_heads; glassgpt does not support that")
    rope = hf.get("rope_scaling") or {}
    rope_params = hf.get("rope_parameters") or {}
    if (rope and rope.get("rope_type", rope.get("type")) not in (None, "default")) or \
            rope_params.get("rope_type", "default") != "default":
        raise CheckpointError(f"{source}: unsupported llama config: scaled RoPE")
    if hf.get("use_sliding_window") or (hf.get("model_type") == "mistral" and hf.get("sliding_window")):
        raise CheckpointError(f"{source}: unsupported llama config: sliding-window attention")
    act = hf.get("hidden_act", "silu")
    if act not in ("silu",) + GELU_ACTS:
        raise CheckpointError(f"{source}: unsupported llama config: hidden_act {act!r} "
                              "(glassgpt's gated MLP uses silu)")
    theta = rope_params.get("rope_theta", hf.get("rope_theta", 10000.0))
    # Qwen2 biases W_Q, W_K and W_V (its config has no attention_bias key); W_O's bias is then zero.
    attn_bias = hf.get("attention_bias", hf.get("model_type") == "qwen2")
    return check_config(lambda: ModelConfig(
        name=hf.get("_name_or_path", "") or "llama", d_vocab=need("vocab_size"),
        n_ctx=need("max_position_embeddings"), d_model=hidden, n_layers=need("num_hidden_layers"),
        n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads, d_mlp=need("intermediate_size"),
        positions="rope", rope_theta=float(theta) if type(theta) in (int, float) else theta, norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6), mlp="swiglu" if act == "silu" else "gelu", attn_bias=attn_bias,
        mlp_bias=hf.get("mlp_bias", False), tie_embeddings=hf.get("tie_word_embeddings", False),
    ), labels, source)


def check_hf_shapes(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]], source: str | Path) -> None:
    """config.json's sizes against the tensors in the safetensors files, before the model is built."""
    gpt2 = cfg.positions == "learned"
    labels = HF_LABELS["gpt2" if gpt2 else "llama"]
    if gpt2:
        shapes = with_transformer_prefix(shapes)
    pattern = r"^(?:transformer\.)?h\.(\d+)\." if gpt2 else r"^(?:model\.)?layers\.(\d+)\."
    check_blocks(cfg.n_layers, list(shapes), pattern, labels["n_layers"], source)
    ours = {}
    for name, theirs, transpose in _expand(GPT2_KEYS if gpt2 else LLAMA_KEYS, cfg.n_layers):
        if theirs in shapes:
            ours[name] = (theirs, tuple(shapes[theirs])[::-1] if transpose else tuple(shapes[theirs]))
    check_shapes(cfg, ours, labels, source)


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    """ModelConfig → a Hugging Face config.json dict (GPT-2 or Llama architecture).

    Two of glassgpt's choices are written exactly in an architecture that lacks them:
    - a GPT-2 style model without biases is a GPT-2 whose biases are zero;
    - a Llama-style model with a plain GELU MLP is a Llama whose gated MLP has GELU as its
      activation and the constant 1 as its up projection (weights 0, bias 1):
      down(gelu(gate(x)) · 1) = down(gelu(x·W_up)).
    """
    if cfg.positions == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu" and cfg.n_kv_heads == cfg.n_heads:
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": cfg.d_vocab,
                "n_positions": cfg.n_ctx, "n_embd": cfg.d_model, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
                "n_inner": cfg.d_mlp, "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
                "tie_word_embeddings": cfg.tie_embeddings, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                "attn_pdrop": 0.0, "bos_token_id": None, "eos_token_id": None}
    if cfg.positions == "rope" and cfg.norm == "rmsnorm":
        gelu = cfg.mlp == "gelu"
        return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": cfg.d_vocab,
                "max_position_embeddings": cfg.n_ctx, "hidden_size": cfg.d_model,
                "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
                "num_key_value_heads": cfg.n_kv_heads, "intermediate_size": cfg.d_mlp,
                "rope_theta": cfg.rope_theta, "rms_norm_eps": cfg.norm_eps,
                "hidden_act": "gelu_pytorch_tanh" if gelu else "silu",
                "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": cfg.attn_bias,
                "mlp_bias": cfg.mlp_bias or gelu, "head_dim": cfg.d_head}
    raise CheckpointError(f"this model mixes GPT-2 and Llama choices (positions={cfg.positions}, norm={cfg.norm}, "
                          f"mlp={cfg.mlp}, {cfg.n_kv_heads} of {cfg.n_heads} key/value heads); Hugging Face has "
                          "no architecture for it (export --format safetensors keeps it as it is)")


def from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Their state dict → ours, by the table. Raises CheckpointError naming any missing tensor."""
    gpt2 = cfg.positions == "learned"
    if gpt2:
        sd = with_transformer_prefix(sd)
    table = _expand(GPT2_KEYS if gpt2 else LLAMA_KEYS, cfg.n_layers)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, transpose in table:
        if theirs not in sd:
            continue
        if ours == "unembed.W_U" and cfg.tie_embeddings:
            continue
        t = sd[theirs]
        out[ours] = t.T.contiguous() if transpose else t
    if gpt2:
        split_qkv(out, cfg)
    else:
        for i in range(cfg.n_layers):
            if cfg.attn_bias and f"blocks.{i}.attn.b_Q" in out and f"blocks.{i}.attn.b_O" not in out:
                out[f"blocks.{i}.attn.b_O"] = torch.zeros(cfg.d_model)  # Qwen2: no bias on o_proj
            if cfg.mlp == "gelu":
                _ungate(out, i)
    return out


def split_qkv(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """GPT-2 keeps Q, K and V side by side in one matrix: W_QKV (d_model, 3·d_model) → W_Q, W_K, W_V, in place."""
    for i in range(cfg.n_layers):
        for kind in ("W", "b"):
            fused = sd.pop(f"blocks.{i}.attn.{kind}_QKV", None)
            if fused is not None:
                for name, part in zip("QKV", fused.split(cfg.d_model, dim=-1)):
                    sd[f"blocks.{i}.attn.{kind}_{name}"] = part.contiguous()


def fuse_qkv(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """W_Q, W_K, W_V → W_QKV (and the biases, zero for a model without them: GPT-2 always has biases)."""
    sd = dict(sd)
    D = cfg.d_model
    for i in range(cfg.n_layers):
        a, m = f"blocks.{i}.attn.", f"blocks.{i}.mlp."
        for key, size in ((a + "b_Q", D), (a + "b_K", D), (a + "b_V", D), (a + "b_O", D), (m + "b_up", cfg.d_mlp),
                          (m + "b_down", D)):
            sd.setdefault(key, torch.zeros(size))
        for kind in ("W", "b"):
            sd[f"{a}{kind}_QKV"] = torch.cat([sd.pop(f"{a}{kind}_{n}") for n in "QKV"], dim=-1)
    return sd


def _gate(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """GELU(x·W_up)·W_down as a gated MLP: W_up becomes the gate, the up projection the constant 1."""
    sd = dict(sd)
    for i in range(cfg.n_layers):
        p = f"blocks.{i}.mlp."
        sd[p + "W_gate"] = sd.pop(p + "W_up")
        sd[p + "b_gate"] = sd.pop(p + "b_up", torch.zeros(cfg.d_mlp))
        sd[p + "W_up"] = torch.zeros(cfg.d_model, cfg.d_mlp)
        sd[p + "b_up"] = torch.ones(cfg.d_mlp)
        sd.setdefault(p + "b_down", torch.zeros(cfg.d_model))
    return sd


def _ungate(sd: dict[str, torch.Tensor], i: int) -> None:
    """A gated GELU MLP whose up projection is the constant 1 is glassgpt's plain GELU MLP: gate → W_up."""
    p = f"blocks.{i}.mlp."
    if p + "W_gate" not in sd:
        return
    W_up, b_up = sd.pop(p + "W_up", None), sd.pop(p + "b_up", None)
    if W_up is None or b_up is None or W_up.count_nonzero() or not torch.all(b_up == 1):
        raise CheckpointError("unsupported llama model: a gated GELU MLP (glassgpt's gated MLP uses silu; its GELU "
                              "MLP has no gate)")
    sd[p + "W_up"] = sd.pop(p + "W_gate")
    if p + "b_gate" in sd:
        sd[p + "b_up"] = sd.pop(p + "b_gate")


def to_hf_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict → theirs, by the same table read the other way (see config_to_hf for the two fills)."""
    gpt2 = config_to_hf(cfg)["model_type"] == "gpt2"
    if gpt2:
        sd = fuse_qkv(sd, cfg)
    elif cfg.mlp == "gelu":
        sd = _gate(sd, cfg)
    out: dict[str, torch.Tensor] = {}
    for ours, theirs, transpose in _expand(GPT2_KEYS if gpt2 else LLAMA_KEYS, cfg.n_layers):
        if ours in sd:
            t = sd[ours]
            out[theirs] = (t.T if transpose else t).contiguous()
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out[GPT2_KEYS[0][1] if gpt2 else LLAMA_KEYS[0][1]]
    return out


# Buffers some checkpoints carry that are not weights (GPT-2's causal mask, old Llama's RoPE table).
NOT_WEIGHTS = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


def unused_tensors(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> list[str]:
    """Tensors of a checkpoint that the key map has no place for (a feature glassgpt would silently drop)."""
    gpt2 = cfg.positions == "learned"
    if gpt2:
        sd = with_transformer_prefix(sd)
    known = {theirs for _, theirs, _ in _expand(GPT2_KEYS if gpt2 else LLAMA_KEYS, cfg.n_layers)}
    return sorted(k for k in sd if k not in known and not k.endswith(NOT_WEIGHTS))


def load_hf_model(model, sd: dict[str, torch.Tensor]) -> None:
    """Load a Hugging Face state dict into a glassgpt GPT built from the matching config."""
    unused = unused_tensors(sd, model.cfg)
    if unused:
        raise CheckpointError(f"checkpoint has {len(unused)} tensor(s) the model config has no place for, e.g. "
                              f"{unused[0]} (a feature glassgpt does not support, or a config.json that does not "
                              "match the weights)")
    ours = from_hf_state_dict(sd, model.cfg)
    expected = set(model.state_dict())
    extra = sorted(set(ours) - expected)
    if extra:
        table = GPT2_KEYS if model.cfg.positions == "learned" else LLAMA_KEYS
        theirs = {o: t for o, t, _ in _expand(table, model.cfg.n_layers)}
        raise CheckpointError(f"checkpoint has {theirs.get(extra[0], extra[0])} ({len(extra)} such tensor(s)), which "
                              "config.json leaves out (e.g. biases with attention_bias/mlp_bias false)")
    missing = sorted(expected - set(ours))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    for name, t in ours.items():
        want = model.state_dict()[name].shape
        if tuple(t.shape) != tuple(want):
            raise CheckpointError(f"tensor {name} has shape {tuple(t.shape)}, expected {tuple(want)}")
    model.load_state_dict({k: v.float() for k, v in ours.items()}, strict=True)


def read_hf_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and the safetensors weights (single or sharded) of a Hugging Face model folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} has no config.json")
    try:
        hf_config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e})") from None
    files = sorted(path.glob("*.safetensors"))
    if not files:
        if any(path.glob("*.bin")):
            raise CheckpointError(f"{path} holds only pickle (.bin) weights; glassgpt reads safetensors only")
        raise CheckpointError(f"{path} has no .safetensors weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            sd.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{f}: unreadable safetensors file ({e})") from None
    return hf_config, sd
