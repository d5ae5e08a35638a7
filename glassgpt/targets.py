"""Where a command may write: a new or empty folder, or one of its own kind when told to replace it.

    glassgpt train --out-dir DIR          a training run       continue: --resume DIR   replace: --overwrite
    glassgpt seq2seq train --out DIR      a seq2seq run        replace: --overwrite
    glassgpt export MODEL --format F DIR  an export (format F) replace: --overwrite  (gguf: also a FILE.gguf)
    glassgpt data prepare SRC --out DIR   a prepared corpus    replace: --force

A folder that holds anything else is never written into: the refusal names the folder and what it
is not, in one line, before any work starts (so a refused run costs nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .checkpoint import CHECKPOINTS, TRAIN_CONFIG
from .errors import GlassError
from .io import read_json


class FolderRefused(GlassError):
    """A command would have written into a folder it did not make (or was not told to replace)."""


def claim_folder(path: str | Path, what: str, is_own: Callable[[Path], bool], replace: bool,
                 flag: str = "--overwrite", alternative: str = "") -> bool:
    """May `what` be written into path? True when path already holds one that `replace` allows replacing.

    what: the kind of folder, as a noun phrase ("a training run"). is_own(path): does the non-empty folder
    hold that kind? alternative: another way out, said in the refusal ("continue it with --resume DIR").
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderRefused(f"{path} is a file, not a folder: refusing to write {what} there")
    if not path.exists() or not any(path.iterdir()):
        return False
    if not is_own(path):
        raise FolderRefused(f"refusing to write {what} into {path}: it is not empty and not {what} "
                            "(choose a new or empty folder)")
    if not replace:
        also = f"; {alternative}" if alternative else ""
        raise FolderRefused(f"refusing to overwrite {path}: it already holds {what} (pass {flag} to replace it{also})")
    return True


def claim_file(path: str | Path, what: str, is_own: Callable[[Path], bool], replace: bool,
               flag: str = "--overwrite") -> bool:
    """claim_folder for a command that writes one file: True when path is an earlier one to be replaced."""
    path = Path(path)
    if path.is_dir():
        raise FolderRefused(f"{path} is a folder: refusing to write {what} there")
    if not path.exists():
        return False
    if not is_own(path):
        raise FolderRefused(f"refusing to overwrite {path}: it is not {what}")
    if not replace:
        raise FolderRefused(f"refusing to overwrite {path}: it already is {what} (pass {flag} to replace it)")
    return True


def is_training_run(path: Path) -> bool:
    return (path / TRAIN_CONFIG).is_file() or (path / CHECKPOINTS).is_dir()


def is_seq2seq_run(path: Path) -> bool:
    try:
        config = read_json(path / "config.json")
    except GlassError:
        return False
    return isinstance(config, dict) and config.get("kind") in ("seq2seq", "pooling")


def is_export(path: Path, fmt: str) -> bool:
    """An earlier `glassgpt export --format fmt` (hf: config.json beside the weights; ours: model_config.json;
    gguf: model.gguf)."""
    if fmt == "gguf":
        return is_gguf_file(path / "model.gguf")
    marker = "config.json" if fmt == "hf" else "model_config.json"
    return (path / "model.safetensors").is_file() and (path / marker).is_file() and not is_seq2seq_run(path)


def is_gguf_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def is_prepared_corpus(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "train.bin").is_file()
