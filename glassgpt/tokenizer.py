"""Tokenizers behind one interface: text ↔ token ids.

- `CharTokenizer`: one token per character, built from a corpus (Tiny Shakespeare has 65).
- `BPETokenizer`: byte-level BPE from Hugging Face `tokenizers` — trained here, or any
  tokenizer.json (GPT-2's, SmolLM2's rebuilt from its GGUF). Byte-level means every
  string round-trips: decode(encode(s)) == s.

Saved as one JSON file in a folder: `tokenizer.json` (BPE) or `char_tokenizer.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from .errors import GlassError
from .io import write_atomic as _write_atomic


class Tokenizer:
    """The interface every tokenizer has."""

    kind = "base"
    special_tokens: dict[str, int]
    bos_id: int | None = None
    eos_id: int | None = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def id_to_piece(self, i: int) -> str:
        """The token as the vocabulary stores it (BPE pieces keep their byte-level marks, e.g. 'Ġthe')."""
        raise NotImplementedError

    def piece_to_id(self, piece: str) -> int | None:
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One id per character, in sorted order of the characters seen in the corpus."""

    kind = "char"
    FILE = "char_tokenizer.json"

    def __init__(self, chars: Iterable[str]):
        self.chars = sorted(set(chars))
        if not self.chars:
            raise GlassError("cannot build a character tokenizer from an empty corpus")
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.special_tokens = {}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            raise GlassError(f"{len(unknown)} character(s) not in the tokenizer's vocabulary: {shown}") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def id_to_piece(self, i: int) -> str:
        return self.chars[int(i)]

    def piece_to_id(self, piece: str) -> int | None:
        return self.stoi.get(piece)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        _write_atomic(path, json.dumps({"kind": "char", "chars": self.chars}, ensure_ascii=False))
        return path


class BPETokenizer(Tokenizer):
    """A Hugging Face `tokenizers.Tokenizer` (tokenizer.json), used without adding special tokens."""

    kind = "bpe"
    FILE = "tokenizer.json"

    def __init__(self, tok, bos: str | None = None, eos: str | None = None):
        self.tok = tok
        self.special_tokens = {t.content: i for i, t in tok.get_added_tokens_decoder().items() if t.special}
        self.bos_id = tok.token_to_id(bos) if bos else None
        self.eos_id = tok.token_to_id(eos) if eos else None
        if self.eos_id is None:
            for name in ("<|endoftext|>", "</s>", "<|im_end|>", "<eos>"):
                if name in self.special_tokens:
                    self.eos_id = self.special_tokens[name]
                    break

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = ("<|endoftext|>",),
              show_progress: bool = False) -> "BPETokenizer":
        """Train byte-level BPE (GPT-2's scheme: bytes → 256 base symbols, then learned merges)."""
        from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 256 + len(special_tokens):
            raise GlassError(f"a byte-level BPE vocabulary needs at least {256 + len(special_tokens)} tokens, "
                             f"got {vocab_size}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=show_progress)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_file(cls, path: str | Path) -> "BPETokenizer":
        try:
            return cls(hf_from_json(Path(path).read_text(encoding="utf-8")))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise GlassError(f"{path}: not a readable tokenizer.json ({str(e).splitlines()[0][:200]})") from None

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def id_to_piece(self, i: int) -> str:
        return self.tok.id_to_token(int(i)) or ""

    def piece_to_id(self, piece: str) -> int | None:
        return self.tok.token_to_id(piece)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / self.FILE
        _write_atomic(path, self.tok.to_str())
        return path


BPE_OPTIONS = {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback",
               "ignore_merges"}  # a BPE model's settings in tokenizer.json, as models.BPE takes them


def hf_from_json(text: str):
    """A Hugging Face `tokenizers.Tokenizer` from its JSON (tokenizer.json's text): the same tokenizer as
    `Tokenizer.from_str(text)` (its to_str() gives the same JSON; tests/test_tokenizer.py), built with less
    resident memory. from_str's own parse of a BPE model's 49k merges leaves about 3 MB of the C heap in
    holes that glibc cannot give back (SmolLM2, benchmarks/memory.py); so a BPE model's vocabulary and merges
    are read by Python's json and handed to models.BPE, and from_str reads the rest, whose vocabulary holds
    only the added tokens (so they keep their ids). Anything else goes to from_str whole."""
    from tokenizers import Tokenizer as HFTokenizer, models

    spec = json.loads(text)
    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, dict):
        return HFTokenizer.from_str(text)
    vocab, merges = model.get("vocab"), model.get("merges")
    options = {k: v for k, v in model.items() if k not in ("type", "vocab", "merges") and v is not None}
    if (model.get("type") != "BPE" or not isinstance(vocab, dict) or not isinstance(merges, list) or set(options) - BPE_OPTIONS
            or not all(isinstance(m, list) and len(m) == 2 for m in merges)):  # (older files: merges as "a b" strings)
        return HFTokenizer.from_str(text)
    model["vocab"] = {t["content"]: t["id"] for t in spec.get("added_tokens") or ()}
    model["merges"] = []
    tok = HFTokenizer.from_str(json.dumps(spec))
    tok.model = models.BPE(vocab, [tuple(m) for m in merges], **options)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer from a folder (tokenizer.json or char_tokenizer.json) or from either file."""
    path = Path(path)
    if path.is_dir():
        for name in (BPETokenizer.FILE, CharTokenizer.FILE):
            if (path / name).is_file():
                return load_tokenizer(path / name)
        raise GlassError(f"{path} holds no tokenizer.json or char_tokenizer.json")
    if not path.is_file():
        raise GlassError(f"tokenizer file not found: {path}")
    if path.name == CharTokenizer.FILE:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return CharTokenizer(data["chars"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise GlassError(f"{path}: not a readable character tokenizer ({e})") from None
    return BPETokenizer.from_file(path)

