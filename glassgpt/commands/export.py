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

from .common import MODEL_HELP, UsageError, add_model_args, command, load

FORMATS = ("hf", "gguf", "safetensors")


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "export", "write a model as a Hugging Face folder, a GGUF file or safetensors",
                ["glassgpt export --model runs/shakespeare --format hf --out hf/shakespeare",
                 "glassgpt export --model smollm2 --format gguf --gguf-type q8_0 --out smol.gguf"])
    p.add_argument("source", nargs="?", metavar="MODEL", help="old spelling of --model")
    p.add_argument("target", nargs="?", metavar="OUT", help="old spelling of --out")
    add_model_args(p, help=MODEL_HELP)
    p.add_argument("--format", choices=FORMATS, required=True, help="hf: a transformers folder; gguf: one file for "
                                                                    "llama.cpp/ollama; safetensors: glassgpt's names")
    p.add_argument("--gguf-type", choices=("f32", "f16", "q8_0"), default="f16", help="gguf: the matrices' type")
    p.add_argument("--out", help="the folder to write: new or empty, or an earlier export with --overwrite "
                                 "(gguf: a folder, or a file ending in .gguf)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export of this format in --out")
    p.set_defaults(func=run, late_positionals=True)


def run(args: argparse.Namespace) -> int:
    if args.late_positionals is not True:  # `export MODEL --format hf DIR`: DIR comes back unparsed
        if args.target or len(args.late_positionals) > 1:
            raise UsageError(f"unexpected {' '.join(args.late_positionals)}")
        args.target = args.late_positionals[0]
    if args.source and args.model or args.target and args.out:
        raise UsageError("give the model and the folder once each (--model M --out DIR)")
    args.model, args.out = args.model or args.source, args.out or args.target
    if not args.out:
        raise UsageError("export needs --out DIR, the folder to write")
    from ..targets import claim_file, claim_folder, is_export, is_gguf_file

    out = Path(args.out)
    if args.format == "gguf" and out.suffix == ".gguf":  # the file itself
        claim_file(out, "a GGUF file", is_gguf_file, args.overwrite)
    else:
        claim_folder(out, f"a --format {args.format} export", lambda p: is_export(p, args.format), args.overwrite)
    loaded = load(args)
    if args.format == "gguf":
        from ..convert.gguf_write import export_gguf

        files = [export_gguf(loaded, out, args.gguf_type)]
    else:
        from ..convert.export import export_hf, export_safetensors

        files = export_hf(loaded, out) if args.format == "hf" else export_safetensors(loaded, out)
    print(f"wrote {', '.join(f.name for f in files)} to {out}")
    return 0
