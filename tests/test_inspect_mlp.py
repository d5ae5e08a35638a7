"""The MLP ablation (G5) on a small model whose answer is known to live in one layer's MLP."""

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.inspect.mlp import mlp_ablation, near_zero_fraction
from glassgpt.model import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ablation_finds_the_mlp_that_matters():
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_vocab=16, n_ctx=16, d_model=32, n_layers=3, n_heads=2, mlp_bias=False)).eval()
    with torch.no_grad():
        model.blocks[1].mlp.W_down.mul_(40.0)  # layer 1's MLP writes far more than the others
        model.blocks[2].mlp.W_down.zero_()  # layer 2's MLP writes nothing
    ids = torch.randint(0, 16, (12,))
    r = mlp_ablation(model, ids, answer_at=5)
    assert r.delta["zero"].shape == (3,) and r.token_delta_zero.shape == (3, 11)
    assert int(r.delta["zero"].abs().argmax()) == 1
    assert r.delta["zero"][2] == pytest.approx(0.0, abs=1e-6)  # removing nothing changes nothing: the control
    assert r.delta["mean"][2] == pytest.approx(0.0, abs=1e-6) and r.delta["shuffle"][2] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        logits = model(ids[None, :-1])[0].float()
    expected = torch.nn.functional.cross_entropy(logits, ids[1:])
    assert r.loss == pytest.approx(float(expected), rel=1e-5)
    assert r.p_answer == pytest.approx(float(logits[5].softmax(-1)[ids[6]]), rel=1e-5)


def test_near_zero_fraction():
    assert near_zero_fraction(torch.tensor([0.0, 0.0, 1.0, 1.0])) == 0.5
    assert near_zero_fraction(torch.ones(10)) == 0.0
