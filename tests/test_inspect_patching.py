"""Activation patching, run_with_hooks, to_tokens / to_str_tokens and per-head weight views."""

from __future__ import annotations

import io

import pytest
import torch

from glassgpt.errors import GlassError
from glassgpt.inspect.patching import (ACTIVATIONS, activation_patching, logit_diff, to_str_tokens,
                                       to_tokens)
from toys import sharp_llama_toy
from glassgpt.tokenizer import BPETokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAN = [5, 17, 3, 29, 8, 11]
CORRUPTED = [5, 17, 3, 41, 8, 11]  # one token differs, at position 3
DIFF = 3


@pytest.fixture(scope="module")
def model():
    return sharp_llama_toy()


METRIC = logit_diff(7, 9)


def hand_patched(model, layer, col, activation, over):
    """One cell, written out: cache the clean activation, replace one slice of it in the corrupted run."""
    name = ACTIVATIONS[activation].format(i=layer)
    _, cache = model.run_with_cache(torch.tensor([CLEAN]), names=name)

    def hook(x, _name):
        x = x.clone()
        if over == "heads":
            x[:, col] = cache[name][:, col]
        elif activation == "z":
            x[:, :, col] = cache[name][:, :, col]
        else:
            x[:, col] = cache[name][:, col]
        return x

    with torch.no_grad():
        return float(METRIC(model.run_with_hooks(torch.tensor([CORRUPTED]), fwd_hooks=[(name, hook)])))


@pytest.mark.parametrize("activation,over", [("resid_pre", "positions"), ("attn_out", "positions"),
                                             ("mlp_out", "positions"), ("z", "positions"), ("z", "heads")])
def test_every_cell_equals_a_hand_written_hook(model, activation, over):
    result = activation_patching(model, CLEAN, CORRUPTED, METRIC, activation, over)
    n_cols = model.cfg.n_heads if over == "heads" else len(CLEAN)
    assert result.grid.shape == (model.cfg.n_layers, n_cols)
    for layer in range(model.cfg.n_layers):
        for col in range(n_cols):
            assert result.grid[layer, col].item() == pytest.approx(hand_patched(model, layer, col, activation, over),
                                                                   abs=1e-4)
    assert result.grid.std() > 1e-3  # the cells differ: patching does something


def test_the_grid_has_its_controls_at_the_ends(model):
    """resid_pre of layer 0 is the embedding: patching the one differing position turns the corrupted run into the
    clean one, patching an equal position changes nothing; the last layer's output at the last position is all
    the logits see."""
    with torch.no_grad():
        clean, corrupted = float(METRIC(model(torch.tensor([CLEAN])))), float(METRIC(model(torch.tensor([CORRUPTED]))))
    assert abs(clean - corrupted) > 0.1
    pre = activation_patching(model, CLEAN, CORRUPTED, METRIC, "resid_pre")
    assert (pre.clean, pre.corrupted) == (pytest.approx(clean, abs=1e-5), pytest.approx(corrupted, abs=1e-5))
    assert pre.grid[0, DIFF].item() == pytest.approx(clean, abs=1e-4)
    for p in range(len(CLEAN)):
        if p != DIFF:
            assert pre.grid[0, p].item() == pytest.approx(corrupted, abs=1e-4)
    assert pre.grid[:, :DIFF].sub(corrupted).abs().max() < 1e-4  # causal: positions before the change carry nothing
    post = activation_patching(model, CLEAN, CORRUPTED, METRIC, "resid_post")
    assert post.normalised()[-1, -1].item() == pytest.approx(1.0, abs=1e-4)
    assert post.normalised()[-1, :-1].abs().max() < 1e-4


def test_patching_leaves_no_hook_behind_and_draws_a_figure(model):
    result = activation_patching(model, CLEAN, CORRUPTED, METRIC, "z", "heads")
    assert not any(h.active for h in model._hooks.values())
    fig = result.figure()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG" and fig.axes[0].get_ylabel() == "layer"


def test_bad_requests_are_named(model):
    with pytest.raises(GlassError, match="same number of tokens"):
        activation_patching(model, CLEAN, CORRUPTED[:-1], METRIC)
    with pytest.raises(GlassError, match="per-head"):
        activation_patching(model, CLEAN, CORRUPTED, METRIC, "resid_pre", over="heads")
    with pytest.raises(GlassError, match="activation must be"):
        activation_patching(model, CLEAN, CORRUPTED, METRIC, "nope")


# ----------------------------------------------------------------------------- run_with_hooks


def test_run_with_hooks_reads_and_replaces_for_one_call_only(model):
    x = torch.tensor([CLEAN])
    seen = []
    with torch.no_grad():
        plain = model(x)
        same = model.run_with_hooks(x, fwd_hooks=[("blocks.*.attn.pattern", lambda a, name: seen.append(name))])
        zeroed = model.run_with_hooks(x, fwd_hooks={"blocks.1.mlp.out": lambda a, name: torch.zeros_like(a)})
        two = model.run_with_hooks(x, fwd_hooks=[("blocks.1.mlp.out", lambda a, n: a * 0),
                                                 ("blocks.1.mlp.out", lambda a, n: a + 1)])  # in order
        _, cache = model.run_with_cache(x, names="blocks.1.mlp.out")
        ones = model.run_with_hooks(x, fwd_hooks=[("blocks.1.mlp.out", lambda a, n: torch.ones_like(a))])
    torch.testing.assert_close(same, plain, atol=1e-5, rtol=1e-5)  # reading the pattern changes nothing
    assert seen == [f"blocks.{i}.attn.pattern" for i in range(3)]
    assert not torch.allclose(zeroed, plain) and torch.allclose(two, ones)
    assert cache["blocks.1.mlp.out"].abs().sum() > 0
    assert not any(h.active for h in model._hooks.values())
    with pytest.raises(KeyError, match="no activation named"):
        model.run_with_hooks(x, fwd_hooks=[("blocks.9.nope", lambda a, n: None)])


# ----------------------------------------------------------------------------- tokens and head weights


def test_to_tokens_and_to_str_tokens():
    tok = BPETokenizer.train(["The capital of France is Paris. " * 30], vocab_size=300,
                             special_tokens=("<|endoftext|>", "<s>"))
    tok.bos_id = tok.special_tokens["<s>"]
    ids = to_tokens(tok, "The capital of France is")
    assert ids.shape == (1, len(tok.encode("The capital of France is"))) and ids.dtype == torch.long
    pieces = to_str_tokens(tok, "The capital of France is")
    assert "".join(pieces) == "The capital of France is" and len(pieces) == ids.shape[1] and pieces[1] == " capital"
    assert to_str_tokens(tok, ids) == pieces
    assert to_tokens(tok, "The", prepend_bos=True)[0, 0].item() == tok.bos_id
    assert to_str_tokens(tok, "The", prepend_bos=True)[0] == "<s>"
