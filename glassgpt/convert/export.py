"""Writing a loaded model for other tools: a Hugging Face folder, or glassgpt's own safetensors.

(GGUF files are written by convert/gguf_write.py.) These are what `glassgpt export` and
`PretrainedGPT.save_pretrained` call.
"""

from __future__ import annotations

from pathlib import Path

from ..io import save_tensors, write_atomic, write_json
from ..tokenizer import BPETokenizer, CharTokenizer
from .hf import config_to_hf, to_hf_state_dict


def export_hf(loaded, out: Path) -> list[Path]:
    """A Hugging Face model folder: config.json + model.safetensors + tokenizer files."""
    cfg = loaded.model.cfg
    hf_config = config_to_hf(cfg)  # raises for a model Hugging Face has no architecture for
    tok = loaded.tokenizer
    hf_config.update(torch_dtype="float32", bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
    sd = to_hf_state_dict({k: v.float() for k, v in loaded.model.state_dict().items()}, cfg)
    if cfg.tie_embeddings:
        sd.pop("lm_head.weight", None)  # tied: transformers re-ties it to the embedding
    files = [write_json(out / "config.json", hf_config),
             save_tensors(out / "model.safetensors", sd, metadata={"format": "pt"})]
    return files + _tokenizer_files(loaded, out)


def export_safetensors(loaded, out: Path) -> list[Path]:
    """glassgpt's own names and ModelConfig: any model, including a GGUF dequantised to fp32."""
    sd = {k: v.float() for k, v in loaded.model.state_dict().items()}
    files = [save_tensors(out / "model.safetensors", sd, metadata={"format": "glassgpt"}),
             write_json(out / "model_config.json", loaded.model.cfg.to_dict())]
    return files + _tokenizer_files(loaded, out)


def _tokenizer_files(loaded, out: Path) -> list[Path]:
    """tokenizer.json as a Hugging Face `tokenizers` file (a character tokenizer becomes a word-level one)."""
    tok = loaded.tokenizer
    if isinstance(tok, BPETokenizer):
        path = tok.save(out)
    elif isinstance(tok, CharTokenizer):
        path = write_atomic(out / "tokenizer.json", char_tokenizer_json(tok))
    else:
        raise TypeError(f"cannot export a {type(tok).__name__}")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": loaded.model.cfg.n_ctx,
              "bos_token": loaded.bos_token, "eos_token": loaded.eos_token}
    if loaded.chat_template:
        config["chat_template"] = loaded.chat_template
    return [path, write_json(out / "tokenizer_config.json", {k: v for k, v in config.items() if v is not None})]


def char_tokenizer_json(tok) -> str:
    """One id per character as a `tokenizers` WordLevel model: split into characters, join back without spaces."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    hf = Tokenizer(models.WordLevel(vocab=dict(tok.stoi), unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    hf.decoder = decoders.Fuse()
    return hf.to_str()
