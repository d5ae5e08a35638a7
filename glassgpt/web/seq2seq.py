"""The translators under --runs (seq2seq run folders) and what their cross-attention reads (T5).

A seq2seq run folder (config.json with "kind": "seq2seq", model.safetensors) is a different
kind of model from the GPTs the rest of the page shows, so it is listed apart: ids
`seq2seq/<folder>`, found by the same scan of the runs folder (children and grandchildren,
nothing outside it). The classifier runs ("kind": "pooling") are left out.

`translate` decodes a source (greedy, or beam search) and reruns the decoder on its output
to read every layer's cross-attention pattern, averaged over heads: row t is the output
token t's query, column s the source character it reads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io import read_json
from ..seq2seq.checkpoint import load_run
from ..seq2seq.decode import beam_search, greedy
from ..seq2seq.plots import alignment
from .registry import _ID, UnknownModel, _inside

PREFIX = "seq2seq/"


@dataclass
class Translator:
    id: str
    path: Path
    run: object | None = None  # glassgpt.seq2seq.checkpoint.Run, once loaded
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # hooks are module state

    def describe(self) -> dict:
        out = {"id": self.id, "label": self.id.removeprefix(PREFIX), "kind": "seq2seq", "loaded": self.run is not None}
        if self.run is not None:
            cfg, task = self.run.model.cfg, self.run.task
            example = task.pair(min(1947, task.cfg.max_number))[0]
            out.update(task=task.name, n_enc_layers=cfg.n_enc_layers, n_dec_layers=cfg.n_dec_layers,
                       n_heads=cfg.n_heads, d_model=cfg.d_model, src_ctx=task.src_ctx, tgt_ctx=cfg.tgt_ctx,
                       source_chars=task.src_vocab.chars, example=example, params=self.run.model.num_params())
        return out


class Translators:
    """The seq2seq runs under runs_dir, by id; each loads on first use and stays loaded."""

    def __init__(self, runs_dir: str | Path | None):
        self.runs_dir = Path(runs_dir).expanduser().resolve() if runs_dir is not None else None
        self._found: dict[str, Translator] = {}
        self._lock = threading.Lock()  # scans and loads from several request threads

    def entries(self) -> list[Translator]:
        with self._lock:
            self._scan()
            return list(self._found.values())

    def _scan(self) -> None:
        if self.runs_dir is None or not self.runs_dir.is_dir():
            self._found.clear()
            return
        found: dict[str, Path] = {}
        for child in sorted(self.runs_dir.iterdir()):
            for folder in [child, *sorted(child.iterdir())] if child.is_dir() else []:
                if folder.is_dir() and is_seq2seq_folder(folder) and _inside(folder, self.runs_dir):
                    found[PREFIX + folder.relative_to(self.runs_dir).as_posix()] = folder
        for run_id, folder in found.items():
            if run_id not in self._found:
                self._found[run_id] = Translator(run_id, folder)
        for run_id in [r for r in self._found if r not in found]:
            del self._found[run_id]

    def get(self, model_id: str | None) -> Translator:
        """The translator for an id (None: the first one), loaded."""
        with self._lock:
            self._scan()
            if model_id is None:
                if not self._found:
                    raise UnknownModel("this server offers no seq2seq run (train one with glassgpt seq2seq train)")
                entry = next(iter(self._found.values()))
            else:
                entry = self._found.get(model_id) if _ID.match(model_id) else None
                if entry is None:
                    raise UnknownModel(f"unknown seq2seq model {model_id[:80]!r}; "
                                       "GET /api/seq2seq/models lists the ones offered")
            if entry.run is None:
                if not _inside(entry.path, self.runs_dir):
                    raise UnknownModel(f"unknown seq2seq model {entry.id!r}")
                entry.run = load_run(entry.path, expect="seq2seq")
        return entry


def is_seq2seq_folder(folder: Path) -> bool:
    """A translator's run folder: config.json with "kind": "seq2seq" beside its weights."""
    if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        config = read_json(folder / "config.json")
    except Exception:  # unreadable or not JSON: not one of ours
        return False
    return isinstance(config, dict) and config.get("kind") == "seq2seq"


@torch.no_grad()
def translate(run, text: str, beam: int = 1) -> dict:
    """The output of one source and the cross-attention alignment of every decoder layer (heads averaged).

    alignment[layer][t][s]: how much output token t (its query) read source character s; each row sums to 1.
    Bad symbols and over-long sources raise the task's own GlassErrors (HTTP 422).
    """
    model, task = run.model, run.task
    tv = task.tgt_vocab
    src = task.encode_sources([text])  # (1, S); checks the symbols and the length
    if beam > 1:
        ids = beam_search(model, src, tv.bos_id, tv.eos_id, beam=beam)[0].tokens
    else:
        tokens, _ = greedy(model, src, tv.bos_id, tv.eos_id)
        ids = tokens[0].tolist()
    if tv.eos_id in ids:
        ids = ids[: ids.index(tv.eos_id) + 1]  # up to <eos>: greedy pads finished rows with more of it
    a = alignment(model, task, text, ids)
    per_layer = a.pattern.mean(1)  # (n_dec_layers, T, S): heads averaged
    return {"source_tokens": a.source, "output_tokens": a.output, "output_text": tv.decode(ids),
            "n_heads": int(a.pattern.shape[1]), "alignment": per_layer.tolist()}
