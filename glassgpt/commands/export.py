"""`glassgpt export MODEL --format hf|safetensors DIR`: write a loaded model to other tools' formats.

hf: a Hugging Face folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)
    that `transformers` loads with the same logits — GPT-2 architecture, and Llama architecture
    (so a GGUF such as SmolLM2 becomes a plain fp32 Hugging Face folder).
gguf: one GGUF file (OUT/model.gguf, or OUT itself when it ends in .gguf) that llama.cpp, ollama and
    transformers read: llama or gpt2 architecture, tokenizer and chat template; --gguf-type f32|f16|q8_0.
safetensors: our own weights, any model: model.safetensors with glassgpt's names (embed.W_E,
    blocks.0.attn.W_Q, ...), model_config.json (ModelConfig) and the tokenizer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert.export import char_tokenizer_json, export_hf, export_safetensors  # noqa: F401 (the writers)

FORMATS = ("hf", "gguf", "safetensors")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model as a Hugging Face folder or as safetensors")
    p.add_argument("model", help="a glassgpt run folder, a GGUF file or a Hugging Face folder ('smollm2': the default)")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--gguf-type", choices=("f32", "f16", "q8_0"), default="f16", help="gguf: the matrices' type")
    p.add_argument("out", help="the folder to write (created; files in it are replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..load import load_model

    loaded = load_model(args.model)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if args.format == "gguf":
        from ..convert.gguf_write import export_gguf

        files = [export_gguf(loaded, out, args.gguf_type)]
    else:
        files = export_hf(loaded, out) if args.format == "hf" else export_safetensors(loaded, out)
    print(f"wrote {', '.join(f.name for f in files)} to {out}")
    return 0
