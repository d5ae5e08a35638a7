"""A small synthetic llama GGUF, written with gguf.GGUFWriter, for fast tests (not a test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from glassgpt.config import ModelConfig
from glassgpt.convert.gguf import to_gguf_tensors
from glassgpt.model import GPT

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "a n", "Ġ Ġ"]
TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokens() -> list[str]:
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    return SPECIALS + alphabet + ["".join(m.split(" ")) for m in MERGES]


def tiny_config(**kw) -> ModelConfig:
    base = dict(name="tiny-llama", d_vocab=len(tokens()), n_ctx=128, d_model=64, n_layers=2, n_heads=4,
                n_kv_heads=2, d_mlp=128, positions="rope", rope_theta=10000.0, norm="rmsnorm", norm_eps=1e-5,
                mlp="swiglu", attn_bias=False, mlp_bias=False, tie_embeddings=True)
    return ModelConfig(**{**base, **kw})


def tiny_model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    model = GPT(tiny_config(**kw)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".w"):  # norm gains: not all ones, so a wrong map shows
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.mul_(10)  # larger weights: attention patterns far from uniform
    return model


def write_gguf(path: str | Path, model: GPT, qtypes: dict[str, str] | None = None,
               arch: str = "llama", template: str | None = TEMPLATE) -> Path:
    """Write model as a GGUF. qtypes: substring of a GGUF tensor name → type name ("Q8_0", "Q4_1", "F16")."""
    import gguf

    cfg = model.cfg
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(cfg.name)
    w.add_context_length(cfg.n_ctx)
    w.add_embedding_length(cfg.d_model)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.d_mlp)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_rope_dimension_count(cfg.d_head)
    w.add_vocab_size(cfg.d_vocab)
    toks = tokens()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(toks)
    w.add_token_types([3 if t in SPECIALS else 1 for t in toks])
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if template:
        w.add_chat_template(template)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    for name, t in to_gguf_tensors(sd, cfg).items():
        array = t.numpy().astype(np.float32)
        qname = next((q for key, q in (qtypes or {}).items() if key in name), "F32")
        qtype = gguf.GGMLQuantizationType[qname]
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, array)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, array.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)  # byte rows; shape inferred
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
