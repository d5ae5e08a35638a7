"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _converted_weights_cache(tmp_path_factory):
    """Converted GGUF weights (glassgpt.fast) go to a temporary folder, never the user's ~/.cache."""
    import os

    old = os.environ.get("GLASSGPT_CACHE")
    os.environ["GLASSGPT_CACHE"] = str(tmp_path_factory.mktemp("glassgpt-cache"))
    yield
    if old is None:
        os.environ.pop("GLASSGPT_CACHE", None)
    else:
        os.environ["GLASSGPT_CACHE"] = old


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors run far faster on one thread, above all on a machine other jobs share."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def assets(tmp_path_factory, one_thread):
    """The bad-input suite's good files (corpus, GGUF, run, translator, …), built once per module."""
    from bad_input import make_assets

    return make_assets(tmp_path_factory.mktemp("assets"))
