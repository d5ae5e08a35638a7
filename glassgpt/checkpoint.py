"""Checkpoints of a training run, written so that a crash can never leave a half-written one.

    RUN/
      train_config.json   run.json (code version, command)   tokenizer.json | char_tokenizer.json
      metrics.jsonl   loss.png
      checkpoints/step_0000500/
          model.safetensors   model_config.json   optimizer.safetensors   state.json

Each file is written atomically (glassgpt.io: temp file, fsync, rename) into a hidden folder
`.step_0000500.tmp`, which is renamed to `step_0000500` only when every file is in, so a
visible checkpoint is always complete. state.json holds the step, the RNG states, the data
position, the optimizer's hyper-parameters and the sha256 of the two tensor files, so a
truncated or corrupted file is caught and named. Only the last `keep` checkpoints stay.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import FIELD_NAMES, ModelConfig
from .errors import CheckpointError, GlassError
from .fetch import sha256_file
from .io import load_tensors, read_json, save_tensors, write_json
from .sizes import check_blocks, check_config, check_shapes
from .trainer import parse_rng_state

CHECKPOINTS = "checkpoints"
TRAIN_CONFIG = "train_config.json"
_NAME = re.compile(r"^step_(\d{7,})$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, model_cfg: ModelConfig, state: dict,
                    keep: int = 3) -> Path:
    """Write checkpoints/step_XXXXXXX for state["step"] (a Trainer.state_dict()) and keep the last `keep`."""
    step = int(state["step"])
    folder = Path(run_dir) / CHECKPOINTS
    final, tmp = folder / checkpoint_name(step), folder / f".{checkpoint_name(step)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_tensors(tmp / "model.safetensors", model.state_dict())
    write_json(tmp / "model_config.json", model_cfg.to_dict())
    opt_tensors, opt_meta = flatten_optimizer(state["optimizer"])
    save_tensors(tmp / "optimizer.safetensors", opt_tensors)
    files = {name: sha256_file(tmp / name, quiet=True) for name in ("model.safetensors", "optimizer.safetensors")}
    ranks = {"rng_ranks": state["rng_ranks"]} if state.get("rng_ranks") else {}  # torchrun: every rank's RNG
    write_json(tmp / "state.json", {"step": step, "data": state["data"], "rng": state["rng"], **ranks,
                                    "optimizer": opt_meta, "sha256": files})
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)  # the checkpoint appears whole, or not at all
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass
class Checkpoint:
    path: Path
    step: int
    model_cfg: ModelConfig
    weights: dict[str, torch.Tensor]
    state: dict  # a Trainer.state_dict(): step, optimizer, data, rng


def read_checkpoint(path: str | Path, with_optimizer: bool = True) -> Checkpoint:
    """Read and verify one checkpoint folder; any problem → CheckpointError naming the file and the field.

    Everything is checked before a tensor is allocated: state.json's fields and types, the files'
    sha256, model_config.json's sizes against the tensor headers of model.safetensors.
    """
    path = Path(path)
    meta = read_json(path / "state.json")
    check_state(meta, path / "state.json", resume=with_optimizer)
    step, sums = meta["step"], meta["sha256"]
    if (m := _NAME.match(path.name)) and int(m.group(1)) != step:
        raise CheckpointError(f"{path / 'state.json'}: step is {step}, but the folder is {path.name}")
    for name in ("model.safetensors",) + (("optimizer.safetensors",) if with_optimizer else ()):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"missing file: {file}")
        if sha256_file(file, quiet=True) != sums.get(name):
            raise CheckpointError(f"{file}: corrupt or truncated (its sha256 does not match state.json)")
    config = read_json(path / "model_config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path / 'model_config.json'}: not a JSON object")
    model_cfg = check_config(lambda: ModelConfig.from_dict(config), {f: f for f in FIELD_NAMES},
                             path / "model_config.json")
    check_weight_shapes(model_cfg, path / "model.safetensors", path / "model_config.json")
    weights = load_tensors(path / "model.safetensors")
    state = {"step": step, "data": meta.get("data", {}), "rng": meta.get("rng"), "rng_ranks": meta.get("rng_ranks")}
    if with_optimizer:
        state["optimizer"] = unflatten_optimizer(load_tensors(path / "optimizer.safetensors"), meta["optimizer"])
    return Checkpoint(path, step, model_cfg, weights, state)


def check_state(meta, source: Path, resume: bool = True) -> None:
    """state.json's fields, each of the right type and range, before anything is resumed from it.

    resume=False (reading only the weights, to run the model): just the step and the checksums.
    """

    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{source}: {field} {why}")

    if not isinstance(meta, dict):
        raise bad("the file", "is not a JSON object")
    for key in ("step", "sha256") + (("data", "rng", "optimizer") if resume else ()):
        if key not in meta:
            raise bad(key, "is missing (not a glassgpt checkpoint state)")
    if not _count(meta["step"]):
        raise bad("step", f"must be a non-negative integer, got {meta['step']!r}")
    if not isinstance(meta["sha256"], dict) or not all(isinstance(v, str) for v in meta["sha256"].values()):
        raise bad("sha256", "must map file names to hex digests")
    if not resume:
        return
    data = meta["data"]
    if not isinstance(data, dict) or not _count(data.get("position")):
        raise bad("data.position", f"must be a non-negative integer, got "
                                   f"{data.get('position') if isinstance(data, dict) else data!r}")
    for key in ("seed", "global_batch"):
        if key in data and not _count(data[key]):
            raise bad(f"data.{key}", f"must be a non-negative integer, got {data[key]!r}")
    check_rng_and_optimizer(meta, source)


def check_rng_and_optimizer(meta: dict, source: Path) -> None:
    """The saved random states and the optimizer's JSON part (rng, rng_ranks, optimizer) of a trainer state."""
    def bad(field: str, why: str) -> CheckpointError:
        return CheckpointError(f"{source}: {field} {why}")

    ranks = meta.get("rng_ranks", [])
    if not isinstance(ranks, list):
        raise bad("rng_ranks", "must be a list of random states, one per process")
    for field, rng in [("rng", meta["rng"])] + [(f"rng_ranks[{r}]", s) for r, s in enumerate(ranks)]:
        try:
            parse_rng_state(rng)
        except (GlassError, ValueError, TypeError, KeyError) as e:
            raise bad(field, f"is not a saved random state ({str(e).strip()[:120] or type(e).__name__})") from None
    opt = meta["optimizer"]
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list) or \
            not all(isinstance(g, dict) for g in opt["param_groups"]) or not isinstance(opt.get("scalars", {}), dict):
        raise bad("optimizer", "must hold param_groups (a list of objects) and scalars (an object)")
    for i, group in enumerate(opt["param_groups"]):
        for key in ("lr", "weight_decay", "eps"):
            if key in group and not _finite(group[key]):
                raise bad(f"optimizer.param_groups[{i}].{key}", f"must be a finite number, got {group[key]!r}")
        betas = group.get("betas", [0.9, 0.99])
        if not (isinstance(betas, list) and len(betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in betas)):
            raise bad(f"optimizer.param_groups[{i}].betas", f"must be two numbers in [0, 1), got {betas!r}")
    for name, value in opt.get("scalars", {}).items():
        idx, _, key = name.partition(".")
        if not (idx.isdigit() and key) or not _finite(value):
            raise bad(f"optimizer.scalars[{name!r}]", f"must be a finite number under 'INDEX.key', got {value!r}")


def check_weight_shapes(cfg: ModelConfig, weights: Path, config_file: Path) -> None:
    """model_config.json's sizes against the tensor headers of model.safetensors (nothing is loaded)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({first})") from None
    labels = {f: f"{config_file.name}:{f}" for f in FIELD_NAMES}
    check_blocks(cfg.n_layers, list(shapes), r"^blocks\.(\d+)\.", labels["n_layers"], weights)
    check_shapes(cfg, {k: (k, s) for k, s in shapes.items()}, labels, weights)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _finite(x) -> bool:
    import math

    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def latest_checkpoint(run_dir: str | Path, latest_good: bool = False, with_optimizer: bool = True,
                      warn=print) -> Checkpoint:
    """The newest checkpoint; if it is damaged, an error naming the file, or (latest_good) the newest intact one."""
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoints in {Path(run_dir) / CHECKPOINTS}")
    for path in reversed(found):
        try:
            return read_checkpoint(path, with_optimizer)
        except CheckpointError as e:
            if not latest_good:
                raise CheckpointError(f"{e} (use --resume-latest-good to fall back to an earlier checkpoint)") from None
            warn(f"skipping damaged checkpoint: {e}")
    raise CheckpointError(f"{run_dir}: every checkpoint is damaged")


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not fit the model config "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


# ----------------------------------------------------------------------------- run folders (for load_model)


def is_run_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / TRAIN_CONFIG).is_file() and (path / CHECKPOINTS).is_dir()


# ----------------------------------------------------------------------------- optimizer state as safetensors + JSON


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch's optimizer state_dict → tensors named '{param}.{key}' and JSON for the rest."""
    tensors, scalars = {}, {}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
