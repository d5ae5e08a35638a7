"""T16: the hand-derived attention gradients equal autograd's."""

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.inspect.grad import attention_backward, attention_forward
from glassgpt.model import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("causal", [True, False])
def test_hand_gradient_equals_autograd(causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    O, P = attention_forward(q, k, v, causal=causal)
    dO = torch.randn_like(O)
    (O * dO).sum().backward()  # a loss whose ∂L/∂O is dO
    dQ, dK, dV = attention_backward(dO, q.detach(), k.detach(), v.detach(), P.detach())
    torch.testing.assert_close(dQ, q.grad)
    torch.testing.assert_close(dK, k.grad)
    torch.testing.assert_close(dV, v.grad)


def test_hand_gradient_inside_the_model():
    """On a real model's q, k, v: the forward matches the model's z, and the hand gradients of the
    next-token loss with respect to q and k match autograd's through the whole network."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(d_vocab=30, n_ctx=10, d_model=16, n_layers=2, n_heads=2)).double()
    tokens = torch.randint(0, 30, (1, 9))
    names = ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v", "blocks.1.attn.z"]
    saved = {}

    def keep(x, name):
        x.retain_grad()
        saved[name] = x

    with model.hooks({n: keep for n in names}):
        logits = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:])
    loss.backward()
    q, k, v, z = (saved[n] for n in names)
    O, P = attention_forward(q.detach(), k.detach(), v.detach())
    torch.testing.assert_close(O, z.detach())
    dQ, dK, dV = attention_backward(z.grad, q.detach(), k.detach(), v.detach(), P)
    torch.testing.assert_close(dQ, q.grad)
    torch.testing.assert_close(dK, k.grad)
    torch.testing.assert_close(dV, v.grad)
