"""The logit lens: its last stage is the model's real output, for both norms."""

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.inspect.lens import lens_logits, logit_lens
from glassgpt.model import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(norm: str, tie: bool) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_layers=3, n_heads=4, norm=norm, tie_embeddings=tie,
                      positions="rope" if norm == "rmsnorm" else "learned", mlp="swiglu" if norm == "rmsnorm" else "gelu")
    model = GPT(cfg)
    with torch.no_grad():  # non-trivial norm weights and biases, so a wrong norm would show
        for name, p in model.named_parameters():
            if name.endswith(".w") or name.endswith(".b"):
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("tie", [True, False])
def test_last_stage_equals_real_logits(norm, tie):
    model = _model(norm, tie)
    tokens = torch.randint(0, 50, (10,))
    names, lens, logits = lens_logits(model, tokens)
    assert names == ["embed", "blocks.0", "blocks.1", "blocks.2"]
    assert lens.shape == (4, 10, 50)
    torch.testing.assert_close(lens[-1], model(tokens.unsqueeze(0))[0].detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lens[-1], logits)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_top_tokens_match_real_argmax_and_probabilities(norm):
    model = _model(norm, tie=True)
    tokens = torch.randint(0, 50, (7,))
    lens = logit_lens(model, tokens, k=5)
    probs = torch.softmax(model(tokens.unsqueeze(0))[0].detach(), dim=-1)
    assert lens.layer_names[0] == "embed" and lens.layer_names[-1] == "blocks.2"
    assert lens.top_ids.shape == (4, 7, 5) and lens.top_ids.dtype == torch.long
    assert torch.equal(lens.top_ids[-1, :, 0], probs.argmax(-1))
    torch.testing.assert_close(lens.top_probs[-1, :, 0], probs.max(-1).values)
    assert (lens.top_probs[:, :, :-1] >= lens.top_probs[:, :, 1:]).all()  # sorted, best first


def test_embed_stage_uses_the_final_norm():
    """Stage 0 is the embedding alone through norm + unembedding: with tied weights and no positions it
    is norm(W_E[t]) · W_Eᵀ, computed here by hand."""
    model = _model("rmsnorm", tie=True)
    tokens = torch.tensor([3, 1, 4, 1, 5])
    _, lens, _ = lens_logits(model, tokens)
    W_E = model.embed.W_E.detach()
    x = W_E[tokens]
    by_hand = (x / x.pow(2).mean(-1, keepdim=True).add(model.cfg.norm_eps).sqrt()) * model.unembed.norm.w.detach() @ W_E.T
    torch.testing.assert_close(lens[0], by_hand, rtol=1e-4, atol=1e-4)


def test_lens_restores_training_mode():
    model = _model("layernorm", tie=True).train()
    logit_lens(model, [1, 2, 3])
    assert model.training
