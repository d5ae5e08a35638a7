"""The generic Trainer, on models that are not GPTs: schedule, decay groups, accumulation, clipping, NaN, state."""

import math

import pytest
import torch
from torch import nn

from glassgpt.trainer import MuonAdamW, NonFiniteLoss, Trainer, lr_at, param_groups


class Regression:
    """Batches (x, y) of a noisy linear map, drawn from a seeded generator; the position is the state."""

    def __init__(self, batch=8, seed=0):
        self.batch, self.seed, self.position = batch, seed, 0
        self.W = torch.randn(4, 2, generator=torch.Generator().manual_seed(99))

    def next(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.position)
        self.position += 1
        x = torch.randn(self.batch, 4, generator=g)
        return x, x @ self.W + 0.01 * torch.randn(self.batch, 2, generator=g)

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, s):
        self.position = s["position"]


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_lr_schedule_warmup_then_cosine():
    lr, lo, warm, decay = 1.0, 0.1, 10, 110
    got = [lr_at(s, lr, lo, warm, decay) for s in range(130)]
    assert got[0] == pytest.approx(0.1) and got[9] == pytest.approx(1.0)  # linear warmup reaches lr
    assert got[10] == pytest.approx(1.0)
    assert got[60] == pytest.approx(lo + 0.5 * (lr - lo))  # half way down the cosine
    assert all(a >= b for a, b in zip(got[10:], got[11:]))  # never rises after warmup
    assert got[110] == got[129] == lo


def test_weight_decay_on_matrices_only():
    model = net()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.dim() for p in decay["params"]} == {2}
    assert {p.dim() for p in no_decay["params"]} == {1}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_training_lowers_loss_and_calls_callbacks():
    calls = []

    class Spy:
        def on_step(self, trainer, step, metrics):
            calls.append(("step", step, metrics["loss"]))

        def on_eval(self, trainer, step, metrics):
            calls.append(("eval", step, metrics["val"]))

        def on_checkpoint(self, trainer, step, path):
            calls.append(("ckpt", step, path))

        def on_end(self, trainer):
            calls.append(("end",))

    model = net()
    held_out = Regression(batch=64, seed=5).next()
    t = Trainer(model, mse, Regression(), max_steps=60, lr=3e-2, warmup_steps=5, eval_every=20,
                eval_fn=lambda: {"val": mse(model, held_out).item()}, checkpoint_every=25,
                checkpoint_fn=lambda tr: f"ckpt-{tr.step}", callbacks=[Spy()])
    t.fit()
    steps = [c[1] for c in calls if c[0] == "step"]
    evals = [(c[1], c[2]) for c in calls if c[0] == "eval"]
    assert steps == list(range(1, 61))
    assert [s for s, _ in evals] == [0, 20, 40, 60]
    assert [c[1:] for c in calls if c[0] == "ckpt"] == [(25, "ckpt-25"), (50, "ckpt-50"), (60, "ckpt-60")]
    assert calls[-1] == ("end",)
    assert evals[-1][1] < evals[0][1] / 10


def test_gradient_accumulation_equals_one_big_batch():
    a, b = net(1), net(1)
    Trainer(a, mse, Regression(batch=8), max_steps=3, lr=1e-2, grad_clip=0).fit()

    class Halves(Regression):  # the same 8 rows, handed out as two micro-batches of 4
        def next(self):
            if not hasattr(self, "pending") or not self.pending:
                x, y = Regression.next(self)
                self.pending = [(x[4:], y[4:]), (x[:4], y[:4])]
            return self.pending.pop()

    Trainer(b, mse, Halves(batch=8), max_steps=3, lr=1e-2, grad_clip=0, grad_accum=2).fit()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_gradient_clipping_bounds_the_update():
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    t = Trainer(model, lambda m, b: 1000 * mse(m, b), Regression(), max_steps=1, lr=0.5, grad_clip=0.25, optimizer=sgd)
    metrics = t.train_step()
    step = torch.cat([(p.detach() - q).flatten() for p, q in zip(model.parameters(), before)])
    assert metrics["grad_norm"] > 0.25  # the norm is reported before clipping
    assert step.norm().item() == pytest.approx(0.5 * 0.25, rel=1e-4)  # SGD: lr × clipped gradient


def test_nan_loss_stops_naming_the_step_and_leaves_weights():
    model = net()

    def loss_fn(m, batch):
        loss = mse(m, batch)
        return loss * float("nan") if t.step == 2 else loss

    t = Trainer(model, loss_fn, Regression(), max_steps=10, lr=1e-2, checkpoint_every=1,
                checkpoint_fn=lambda tr: f"ckpt-{tr.step}")
    snapshot = {}

    class Keep:
        def on_step(self, trainer, step, metrics):
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})

    t.callbacks.append(Keep())
    with pytest.raises(NonFiniteLoss, match=r"nan at step 3.*ckpt-2"):
        t.fit()
    assert t.step == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot[k])  # the failing step changed nothing


def test_infinite_gradient_stops():
    model = net()
    t = Trainer(model, lambda m, b: mse(m, b) + 0 * m[0].weight.sum() * float("inf"), Regression(), max_steps=3)
    with pytest.raises(NonFiniteLoss, match="step 1"):
        t.fit()


def test_state_dict_resumes_exactly():
    full = net(3)
    t = Trainer(full, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3)
    losses = [t.train_step()["loss"] for _ in range(20)]

    half = net(3)
    t1 = Trainer(half, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3)
    for _ in range(10):
        t1.train_step()
    state, weights = t1.state_dict(), {k: v.clone() for k, v in half.state_dict().items()}
    torch.manual_seed(12345)  # disturb every generator in between
    resumed = net(4)
    resumed.load_state_dict(weights)
    t2 = Trainer(resumed, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3)
    t2.load_state_dict(state)
    assert [t2.train_step()["loss"] for _ in range(10)] == losses[10:]
    assert all(math.isfinite(x) for x in losses)


def muon_adamw(model, lr=1e-2, muon_lr=0.05):
    matrices = [model[0].weight, model[2].weight]  # the hidden matrices; biases and the norm go to AdamW
    rest = [p for p in model.parameters() if all(p is not m for m in matrices)]
    return MuonAdamW(matrices, rest, lr, muon_lr, weight_decay=0.1, betas=(0.9, 0.99))


def test_muon_adamw_schedules_both_and_learns():
    model = net(5)
    held_out = Regression(batch=256, seed=7).next()
    before = mse(model, held_out).item()
    opt = muon_adamw(model)
    t = Trainer(model, mse, Regression(), max_steps=40, lr=1e-2, warmup_steps=5, optimizer=opt)
    t.train_step()  # warmup step 1 of 5: a fifth of each optimizer's own peak
    assert [g["lr"] for g in opt.muon.param_groups] == [pytest.approx(0.05 / 5)]
    assert [g["lr"] for g in opt.adamw.param_groups] == [pytest.approx(1e-2 / 5)] * 2
    t.fit()
    assert mse(model, held_out).item() < before / 5  # a control: the untrained net's error


def test_muon_adamw_state_dict_resumes_exactly():
    full = net(3)
    t = Trainer(full, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3, optimizer=muon_adamw(full))
    losses = [t.train_step()["loss"] for _ in range(20)]

    half = net(3)
    t1 = Trainer(half, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3, optimizer=muon_adamw(half))
    for _ in range(10):
        t1.train_step()
    state, weights = t1.state_dict(), {k: v.clone() for k, v in half.state_dict().items()}
    assert sorted(state["optimizer"]["state"]) == list(range(6))  # Muon's 2 matrices, then AdamW's 4 tensors
    resumed = net(4)
    resumed.load_state_dict(weights)
    t2 = Trainer(resumed, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3, optimizer=muon_adamw(resumed))
    t2.load_state_dict(state)
    assert [t2.train_step()["loss"] for _ in range(10)] == losses[10:]
    fresh = net(4)
    fresh.load_state_dict(weights)
    t3 = Trainer(fresh, mse, Regression(), max_steps=20, lr=1e-2, warmup_steps=3, optimizer=muon_adamw(fresh))
    t3.step, t3.batches.position = 10, 10  # the control: the same weights and data without the optimizer state
    assert [t3.train_step()["loss"] for _ in range(10)] != losses[10:]
