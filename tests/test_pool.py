"""The C step's worker threads (glassgpt/kernels/pool.c): a narrower step leaves them asleep, and they sleep
as soon as a step is over. Asserted on the pool's own counters, not on timings."""

import ctypes
import time

import pytest
import torch

from glassgpt import GPT, kernels, preset
from glassgpt.decode import StaticKVCache
from glassgpt.fast import pack_model
from glassgpt.kernels.step import CStep

pytestmark = pytest.mark.skipif(not kernels.usable(), reason="no C kernel on this machine: no C step, no pool")


def _model() -> GPT:
    cfg = preset("smollm2-135m", d_vocab=128, n_ctx=32, n_layers=2, d_model=128, n_heads=4, n_kv_heads=2, d_mlp=192)
    torch.manual_seed(0)
    return pack_model(GPT(cfg).eval(), "int4")


def _state() -> dict:
    out = (ctypes.c_int64 * 4)()
    kernels.library().pool_state(out)
    return dict(zip(("workers", "sleeping", "naps", "worker_pieces"), out))  # sleeping: asleep, no section missed


def _all_asleep(within_s: float = 10.0) -> dict:
    """The pool once every worker sleeps (it must come to that; the wait only allows for a slow scheduler)."""
    deadline = time.time() + within_s
    while (s := _state())["sleeping"] < s["workers"] and time.time() < deadline:
        time.sleep(0.01)
    return s


@torch.inference_mode()
def _steps(model, threads: int, n: int) -> torch.Tensor:
    step, cache = CStep(model, threads=threads), StaticKVCache(model.cfg, n)
    out, token = [], torch.tensor([[5]])
    for pos in range(n):
        out.append(step(token, cache, pos))
        token = out[-1].argmax(-1, keepdim=True)
    return torch.cat(out)


def test_after_a_two_thread_step_the_worker_sleeps_and_one_thread_steps_leave_it_asleep():
    model = _model()
    before = _state()
    two = _steps(model, 2, 8)
    s = _all_asleep()
    assert s["workers"] >= 1 and s["sleeping"] == s["workers"], s  # parked after the step, not spinning
    assert s["naps"] > before["naps"]
    one = _steps(model, 1, 8)  # a 1-thread step: computed by the caller alone, no worker woken
    after = _state()
    assert after["worker_pieces"] == s["worker_pieces"] and after["naps"] == s["naps"], (s, after)
    assert after["sleeping"] == after["workers"]
    assert torch.equal(one, two)
    # (control: the counters do see a worker's work — a 2-thread step after the 1-thread ones wakes it)
    _steps(model, 2, 8)
    woke = _all_asleep()
    assert woke["naps"] > after["naps"]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stream_read_reads_every_byte_once_however_many_threads_share_it(threads):
    """step.c's stream_read (benchmarks/matvec.py's pure read) through the pool: 1 MB pieces summed as int64."""
    lib = kernels.library()
    lib.stream_read.restype = ctypes.c_int64
    lib.stream_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    x = torch.arange(5 << 17, dtype=torch.int64)  # 5 MB: 5 pieces
    assert lib.stream_read(x.data_ptr(), x.numel() * 8, threads) == int(x.sum())
    x[-1] += 1  # (control: the last piece is read too)
    assert lib.stream_read(x.data_ptr(), x.numel() * 8, threads) == int(x.sum())


def test_the_worker_takes_pieces_of_attention():
    """step_attention (the step's attention alone) on two threads over 3000 positions: 3 key/value heads × 3
    spans = 9 pieces a call, some of them done by the worker; on one thread none (and the same bits)."""
    lib = kernels.library()
    lib.attention_part_floats.restype = ctypes.c_size_t
    H, H_kv, d, n = 9, 3, 64, 3000
    torch.manual_seed(0)
    q, K, V = torch.randn(H, d), torch.randn(H_kv, n, d).half(), torch.randn(H_kv, n, d).half()
    scores, part = torch.empty(H, n), torch.empty(lib.attention_part_floats(H, d, n))

    def attend(threads: int) -> torch.Tensor:
        z = torch.empty(H, d)
        pointers = [ctypes.c_void_p(t.data_ptr()) for t in (q, K, V)] + [None, None]
        assert lib.step_attention(H, H_kv, d, *pointers, 1, n, n - 1, kernels.ISAS[kernels.kernel()][0],
                                  *(ctypes.c_void_p(t.data_ptr()) for t in (scores, part, z)), threads) == 0
        return z

    one = attend(1)
    before = _state()["worker_pieces"]
    for _ in range(200):  # (a worker the system has not run yet leaves its share to the caller: try again)
        assert torch.equal(attend(2), one)
        if _state()["worker_pieces"] > before:
            break
    assert _state()["worker_pieces"] > before
    settled = _all_asleep()["worker_pieces"]
    assert torch.equal(attend(1), one) and _state()["worker_pieces"] == settled  # one thread: the caller alone
