"""Run folders for the translator and the classifier, like the GPT's: weights + JSON, written atomically.

    run/
      model.safetensors   the weights (no pickle)
      config.json         {"kind": "seq2seq" | "pooling", "model": {...}, "task": {...}, "train": {...}, "version"}
      log.json            the loss of every step, training time, held-out scores
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .. import __version__
from ..errors import CheckpointError, GlassError
from ..io import load_tensors, read_json, save_tensors, write_json
from .model import EncoderDecoder, Seq2SeqConfig
from .pooling import PoolConfig, PoolingClassifier
from .task import Task, TaskConfig

KINDS = {"seq2seq": (EncoderDecoder, Seq2SeqConfig), "pooling": (PoolingClassifier, PoolConfig)}


@dataclass
class Run:
    model: EncoderDecoder | PoolingClassifier
    task: Task
    kind: str
    config: dict
    log: dict


def save_run(folder: str | Path, model: nn.Module, task: Task, train: dict, log: dict) -> Path:
    folder = Path(folder)
    kind = "seq2seq" if isinstance(model, EncoderDecoder) else "pooling"
    # Weights first, config last: a folder with a config.json always has its weights.
    save_tensors(folder / "model.safetensors", dict(model.state_dict()), metadata={"format": f"glassgpt-{kind}"})
    write_json(folder / "log.json", log)
    write_json(folder / "config.json", {"kind": kind, "model": model.cfg.to_dict(), "task": task.cfg.to_dict(),
                                        "train": train, "version": __version__})
    return folder


def load_run(folder: str | Path, expect: str | None = None) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"run folder not found: {folder}")
    config = read_json(folder / "config.json")
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in KINDS:
        raise CheckpointError(f"{folder / 'config.json'}: not a seq2seq or pooling run (kind={kind!r})")
    if expect and kind != expect:
        what = {"seq2seq": "a translator (seq2seq train --task digits-to-words)",
                "pooling": "a classifier (seq2seq train --task sorted)"}
        raise GlassError(f"{folder} holds {what[kind]}, but this command needs {what[expect]}")
    model_cls, cfg_cls = KINDS[kind]
    try:
        task = Task(TaskConfig(**config["task"]))
        model = model_cls(cfg_cls.from_dict(config["model"]), pad_id=task.src_vocab.pad_id)
    except (KeyError, TypeError, GlassError, ValueError) as e:
        raise CheckpointError(f"{folder / 'config.json'}: bad configuration ({e})") from None
    tensors = load_tensors(folder / "model.safetensors")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{folder / 'model.safetensors'}: weights do not fit the config "
                              f"({str(e).splitlines()[0][:160]})") from None
    model.eval()
    log_path = folder / "log.json"
    log = read_json(log_path) if log_path.is_file() else {}
    return Run(model, task, kind, config, log)
