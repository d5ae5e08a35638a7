"""The run folder a training run writes next to its checkpoints (T14: config, code version, log):

    runs/<name>/
      train_config.json     every TrainConfig key, as run (resume reads it back)
      run.json              code version, command, python/torch versions, device, the model's config
      data_manifest.json    which data, which tokenizer, how it was split
      <tokenizer files>     the tokenizer, so that the folder alone can be sampled
      metrics.jsonl, loss.png      written by glassgpt.callbacks.MetricsLog
      checkpoints/step_NNNNNNN/    written by glassgpt.checkpoint
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import TRAIN_CONFIG
from .io import read_json, write_json


def code_version() -> dict[str, str]:
    info = {"glassgpt": __version__}
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=5)
        if done.returncode == 0:
            info["git"] = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def default_out_dir(data: str) -> Path:
    """runs/<data's name>-<date>-<time>"""
    name = Path(data).name or "data"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_run_folder(out: Path, train_config: dict[str, Any], tokenizer, data_dir: Path, info: dict[str, Any]) -> None:
    """The files that describe a run (everything but metrics and checkpoints); info goes into run.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / TRAIN_CONFIG, train_config)
    tokenizer.save(out)
    write_json(out / "data_manifest.json", read_json(Path(data_dir) / "manifest.json"))
    write_json(out / "run.json", {
        "version": code_version(), "command": sys.argv, "python": sys.version.split()[0],
        "torch": torch.__version__, **info, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
