"""Run folders for the translator and the classifier, like the GPT's: weights + JSON, written atomically.

    run/
      model.safetensors     the weights (no pickle)
      trainer.safetensors   the optimizer's tensors, for --resume
      trainer.json          the Trainer's step, batch and random states, the optimizer's scalars, and the
                            sha256 of both tensor files (weights and trainer state must be of the same step)
      config.json           {"kind": "seq2seq" | "pooling", "model": {...}, "task": {...}, "train": {...}, "version"}
      log.json              the loss of every step, training time, held-out scores

Each file is written atomically; config.json last, so a folder with a config.json has its weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..checkpoint import check_rng_and_optimizer, flatten_optimizer, unflatten_optimizer
from ..fetch import sha256_file
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


def save_run(folder: str | Path, model: nn.Module, task: Task, train: dict, log: dict,
             trainer_state: dict | None = None) -> Path:
    """Write the run folder; trainer_state (a Trainer.state_dict()) makes it resumable."""
    folder = Path(folder)
    kind = "seq2seq" if isinstance(model, EncoderDecoder) else "pooling"
    # Weights first, config last: a folder with a config.json always has its weights.
    save_tensors(folder / "model.safetensors", dict(model.state_dict()), metadata={"format": f"glassgpt-{kind}"})
    if trainer_state is not None:
        tensors, optimizer = flatten_optimizer(trainer_state["optimizer"])
        save_tensors(folder / "trainer.safetensors", tensors)
        sums = {name: sha256_file(folder / name, quiet=True) for name in ("model.safetensors", "trainer.safetensors")}
        write_json(folder / "trainer.json", {"step": trainer_state["step"], "data": trainer_state["data"],
                                             "rng": trainer_state["rng"], "optimizer": optimizer, "sha256": sums})
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


def write_log(folder: str | Path, log: dict) -> None:
    write_json(Path(folder) / "log.json", log)


def read_trainer_state(folder: str | Path) -> dict:
    """The Trainer.state_dict() saved with the run's weights, every field checked; CheckpointError if it cannot
    be resumed from (no state, damaged, or of another step than the weights)."""
    folder = Path(folder)
    source = folder / "trainer.json"
    if not source.is_file():
        raise CheckpointError(f"{folder}: no trainer state ({source.name}); only a run written by `seq2seq train` "
                              "can be resumed")
    meta = read_json(source)
    if not isinstance(meta, dict) or not all(k in meta for k in ("step", "data", "rng", "optimizer", "sha256")):
        raise CheckpointError(f"{source}: not a trainer state (needs step, data, rng, optimizer, sha256)")
    step, generator = meta["step"], (meta["data"] or {}).get("generator") if isinstance(meta["data"], dict) else None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{source}: step must be a non-negative integer, got {step!r}")
    if not (isinstance(generator, list) and len(generator) == len(torch.Generator().get_state())
            and all(isinstance(b, int) and 0 <= b < 256 for b in generator)):
        raise CheckpointError(f"{source}: data.generator must be a list of bytes (a torch.Generator state)")
    check_rng_and_optimizer(meta, source)
    for name in ("model.safetensors", "trainer.safetensors"):
        if not (folder / name).is_file():
            raise CheckpointError(f"missing file: {folder / name}")
        if not isinstance(meta["sha256"], dict) or sha256_file(folder / name, quiet=True) != meta["sha256"].get(name):
            raise CheckpointError(f"{folder / name}: does not match {source.name} (changed, damaged, or written by a "
                                  "save that was cut short)")
    optimizer = unflatten_optimizer(load_tensors(folder / "trainer.safetensors"), meta["optimizer"])
    return {"step": step, "optimizer": optimizer, "data": meta["data"], "rng": meta["rng"]}
