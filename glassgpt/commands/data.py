"""`glassgpt data prepare SOURCE`: a corpus → train.bin / val.bin + tokenizer + manifest.json."""

from __future__ import annotations

import argparse

from .common import command, fraction


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "data", "prepare a corpus for pre-training (token files, tokenizer, manifest)",
                ["glassgpt data prepare shakespeare", "glassgpt data prepare notes/ --tokenizer bpe:4096 --out data/notes"])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    prep = command(actions, "prepare", "tokenize a text file, a folder, or a recipe (tinyshakespeare, shakespeare, python-stdlib)",
                   ["glassgpt data prepare shakespeare --tokenizer bpe:1024",
                    "glassgpt data prepare book.txt --out data/book --val-fraction 0.05"])
    prep.add_argument("source", help="a UTF-8 text file, a folder of them, or a recipe: tinyshakespeare, shakespeare, python-stdlib")
    prep.add_argument("--tokenizer", type=tokenizer_spec, default="char", help="char, bpe or bpe:VOCAB (default: char)")
    prep.add_argument("--out", help="output folder (default: a folder in the cache, ~/.cache/glassgpt/data/...)")
    prep.add_argument("--val-fraction", type=fraction, default=0.1, help="the last fraction of the text kept for validation")
    prep.add_argument("--force", action="store_true",
                      help="prepare again even if the folder is up to date, or replace another prepared corpus in --out")
    p.set_defaults(func=run)


def tokenizer_spec(text: str) -> str:
    kind, _, vocab = text.partition(":")
    if kind == "char" and not vocab or kind == "bpe" and (not vocab or vocab.isdigit() and int(vocab) > 0):
        return text
    raise argparse.ArgumentTypeError(f"unknown tokenizer {text!r}: char, bpe or bpe:VOCAB (e.g. bpe:4096)")


def run(args: argparse.Namespace) -> int:
    from ..data import open_data, prepare

    out = prepare(args.source, args.out, args.tokenizer, args.val_fraction, force=args.force)
    m = open_data(out, verify=False).manifest
    split = m["split"]
    print(f"{m['name']}: {m['files']} file(s), {m['chars']:,} characters, sha256 {m['sha256'][:16]}…")
    print(f"tokenizer {m['tokenizer']['spec']} ({m['tokenizer']['vocab_size']} tokens), {m['dtype']}: "
          f"{split['train_tokens']:,} train + {split['val_tokens']:,} val tokens (last {split['val_fraction']:.0%})")
    print(out)
    return 0
