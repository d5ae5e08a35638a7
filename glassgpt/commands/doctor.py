"""`glassgpt doctor`: what this machine offers glassgpt, in one screen (paste it into a bug report)."""

from __future__ import annotations

import argparse
import sys

from .common import command

PACKAGES = ("torch", "numpy", "tokenizers", "safetensors", "gguf", "jinja2", "fastapi", "pydantic", "uvicorn",
            "transformers", "playwright")
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                "amx_tile", "amx_bf16", "asimd", "sve", "bf16", "i8mm")


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "doctor", "versions, threads, CPU vector extensions, the default model, a browser for the "
                               "explorer's tests, and the device a model would run on", "glassgpt doctor")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import platform

    from .. import __version__
    from ..fetch import cache_dir, find, pinned

    rows = [("glassgpt", f"{__version__} ({_where()})"),
            ("python", f"{platform.python_version()} ({sys.executable})"),
            ("platform", f"{platform.system()} {platform.release()} {platform.machine()}")]
    rows += [(name, _version(name)) for name in PACKAGES]
    import torch

    rows += [("threads", f"torch uses {torch.get_num_threads()} of {_cpus()} CPUs (--threads N changes it)"),
             ("cpu", f"{_cpu_name()}; vector extensions: {' '.join(_vector_flags()) or 'unknown'}; "
                     f"torch kernels: {torch.backends.cpu.get_cpu_capability()}"),
             ("device", _device(torch))]
    model = find()
    rows.append(("default model", f"{pinned('smollm2').title}: {model}" if model else
                 "not fetched yet (glassgpt models pull smollm2, or it is fetched on first use)"))
    rows.append(("cache", str(cache_dir())))
    rows.append(("browser", _browser()))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:>{width}}  {value}")
    return 0


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _where() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpuinfo() -> dict[str, str]:
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def _cpu_name() -> str:
    import platform

    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def _vector_flags() -> list[str]:
    import platform

    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if not flags and platform.machine() == "arm64" and sys.platform == "darwin":
        return ["neon (Apple silicon)"]
    return [f for f in VECTOR_FLAGS if f in flags]


def _device(torch) -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} (torch {torch.version.cuda})"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps (Apple GPU)"
    return "cpu (no CUDA or MPS device)"


def _browser() -> str:
    import shutil

    found = [p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p]
    if found:
        return f"{found[0]} (the explorer's browser tests can run)"
    return "no chromium: the explorer's browser tests need it (Debian: apt-get install chromium; `make test` does it)"
