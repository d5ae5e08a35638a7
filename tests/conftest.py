"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    """Tiny Shakespeare (1.1 MB), which CI lays beside the repository in shared/data/."""
    path = SHARED / "data" / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.fail(f"Tiny Shakespeare not found at {path}")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors run far faster on one thread, above all on a machine other jobs share."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
