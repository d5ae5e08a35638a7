"""Per-head weight views (glassgpt.inspect.weights) mean the same heads as the model's forward pass."""

from __future__ import annotations

import math

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.inspect.weights import W_QK, head_weights
from glassgpt.model import GPT
from toys import sharp_llama_toy

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAN = [5, 17, 3, 29, 8, 11]


@pytest.fixture(scope="module")
def model():
    return sharp_llama_toy()


def test_per_head_views_have_transformerlens_shapes_and_mean_the_same_heads(model):
    attn = model.blocks[1].attn
    w = head_weights(model, 1)
    H, D, d = model.cfg.n_heads, model.cfg.d_model, model.cfg.d_head
    assert w["W_Q"].shape == w["W_K"].shape == w["W_V"].shape == (H, D, d) and w["W_O"].shape == (H, d, D)
    assert w["b_Q"].shape == w["b_K"].shape == (H, d)
    group = H // model.cfg.n_kv_heads  # each key/value head serves `group` query heads
    for h in range(H):
        q_cols, kv_cols = slice(h * d, (h + 1) * d), slice(h // group * d, (h // group + 1) * d)
        assert torch.equal(w["W_Q"][h], attn.W_Q[:, q_cols]) and torch.equal(w["W_O"][h], attn.W_O[q_cols])
        assert torch.equal(w["W_K"][h], attn.W_K[:, kv_cols]) and torch.equal(w["W_V"][h], attn.W_V[:, kv_cols])
        assert torch.equal(w["b_K"][h], attn.b_K[kv_cols])
    # the attention output is the sum over heads of z_h · W_O[h] (plus b_O)
    x = torch.tensor([CLEAN])
    with torch.no_grad():
        _, cache = model.run_with_cache(x, names=["blocks.1.attn.z", "blocks.1.attn.out"])
        z = cache["blocks.1.attn.z"][0]  # (H, T, d)
        by_head = torch.einsum("htd,hdm->tm", z, w["W_O"]) + attn.b_O
    torch.testing.assert_close(by_head, cache["blocks.1.attn.out"][0], atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # W_Q is a view: editing it edits the model
        w["W_Q"][2, 0, 0] = 123.0
    assert attn.W_Q[0, 2 * d].item() == 123.0



def test_W_QK_gives_each_heads_scores_and_not_another_heads():
    """Without RoPE and biases, head h's scores are x·W_QK[h]·xᵀ/√d_head; the control is another head's W_QK."""
    torch.manual_seed(1)
    cfg = ModelConfig(d_vocab=64, n_ctx=16, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_mlp=64,
                      positions="learned", attn_bias=False)
    model = GPT(cfg).eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([CLEAN]), names=["blocks.0.resid_pre", "blocks.0.attn.scores"])
        x = model.blocks[0].ln1(cache["blocks.0.resid_pre"])[0]  # (T, d_model)
        W = W_QK(model, 0)  # (H, d_model, d_model)
        by_hand = x @ W @ x.T / math.sqrt(cfg.d_head)  # (H, T, T)
    scores = cache["blocks.0.attn.scores"][0]  # (H, T, T), before the mask
    assert W.shape == (4, 32, 32)
    torch.testing.assert_close(by_hand, scores, atol=1e-5, rtol=1e-4)
    other = by_hand[[1, 2, 3, 0]]  # each head's scores from another head's W_QK
    assert (other - scores).abs().max() > 100 * (by_hand - scores).abs().max()
