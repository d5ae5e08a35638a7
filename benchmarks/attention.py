"""Attention alone, as the C decode step runs it, per KV-cache dtype: is it reading memory or computing?

    .venv/bin/python benchmarks/attention.py                       # SmolLM2's shape, 128 and 2000 tokens
    .venv/bin/python benchmarks/attention.py --contexts 2000 --rounds 21
    .venv/bin/python benchmarks/attention.py --threads 1,2 --dtypes float16   # shared among the pool's threads

One decode step of SmolLM2-135M attends once per layer: 9 query heads over 3 key/value heads of 64 dims, 30
layers. This times step.c's attention (`step_attention`, the function the step calls) for those 30 layers at
a context length, in each cache dtype the step reads (float32, float16, int8 codes with a float32 scale per
row), two ways, in turns (a busy minute slows all alike; medians):

    far    each layer its own cache, as in a real step: 30 × keys and values from memory
    near   layer 0's cache 30 times: after the first call it comes from the CPU's caches (L2/L3)

If `near` is about as slow as `far`, the time goes to arithmetic, not to reading: fewer bytes per key
would not make attention faster. GB/s = the cache bytes one pass reads ÷ its time. --threads: each
layer's attention shared in pieces (key/value head × span of at most 1024 positions) among that many threads, as
the step does with GLASSGPT_DECODE_THREADS; every thread count in turns with the rest.
Results: benchmarks/results/attention-<kernel>.json with the CPU's flags.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from matvec import cpu_info  # noqa: E402

from glassgpt import kernels  # noqa: E402
from glassgpt.decode import quantize_rows  # noqa: E402
from glassgpt.kernels.step import CACHE_DTYPES  # noqa: E402

H, H_KV, D_HEAD, LAYERS = 9, 3, 64, 30  # SmolLM2-135M


def caches(capacity: int) -> dict:
    """dtype name → (K, V, K_scale, V_scale), each (LAYERS, H_KV, capacity, D_HEAD) (scales without D_HEAD)."""
    torch.manual_seed(0)
    K, V = torch.randn(LAYERS, H_KV, capacity, D_HEAD), torch.randn(LAYERS, H_KV, capacity, D_HEAD)
    (K8, K_scale), (V8, V_scale) = quantize_rows(K), quantize_rows(V)
    return {"float32": (K, V, None, None), "float16": (K.half(), V.half(), None, None),
            "int8": (K8, V8, K_scale, V_scale)}


def one_pass(lib, isa: int, q, tensors, pos: int, near: bool, scores, part, z, threads: int) -> float:
    """Seconds for LAYERS calls of step_attention at position pos."""
    K = tensors[0]
    t = time.perf_counter()
    for i in range(LAYERS):
        layer = 0 if near else i
        ptr = [ctypes.c_void_p(None if x is None else x[layer].data_ptr()) for x in tensors]
        lib.step_attention(H, H_KV, D_HEAD, ctypes.c_void_p(q.data_ptr()), *ptr, CACHE_DTYPES[K.dtype], K.shape[2],
                           pos, isa, ctypes.c_void_p(scores.data_ptr()), ctypes.c_void_p(part.data_ptr()),
                           ctypes.c_void_p(z.data_ptr()), threads)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="128,2000")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--kernel", default="", help="avx512-vnni or avx2 (default: this CPU's)")
    ap.add_argument("--threads", default="1", help="thread counts sharing each layer's attention, e.g. 1,2")
    ap.add_argument("--dtypes", default="float32,float16,int8", help="cache dtypes (float32, float16, int8)")
    args = ap.parse_args()
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
        contexts = [int(c) for c in args.contexts.split(",")]
    except ValueError:
        sys.exit(f"attention.py: --threads and --contexts take numbers, got {args.threads!r}, {args.contexts!r}")
    if not all(1 <= t <= 16 for t in thread_counts) or not all(1 <= c <= 65536 for c in contexts):
        sys.exit("attention.py: threads from 1 to 16, contexts from 1 to 65536")
    dtypes = args.dtypes.split(",")
    if not set(dtypes) <= {"float32", "float16", "int8"}:
        sys.exit(f"attention.py: --dtypes takes float32, float16, int8, got {args.dtypes!r}")
    lib = kernels.library()
    if lib is None:
        sys.exit(f"attention.py: no C kernel here ({kernels.why()})")
    name = args.kernel or kernels.kernel()
    if name not in kernels.usable():
        sys.exit(f"attention.py: kernel {name!r} is not usable here (usable: {', '.join(kernels.usable())})")
    isa = kernels.ISAS[name][0]
    lib.step_attention.restype = ctypes.c_int
    lib.attention_part_floats.restype = ctypes.c_size_t
    capacity = max(contexts)
    held = {dtype: t for dtype, t in caches(capacity).items() if dtype in dtypes}
    q = torch.randn(H, D_HEAD)
    scores, z = torch.empty(H, capacity), torch.empty(H, D_HEAD)
    part = torch.empty(lib.attention_part_floats(H, D_HEAD, capacity))
    times = {(dtype, n, where, t): [] for dtype in held for n in contexts for where in ("far", "near")
             for t in thread_counts}
    for _ in range(args.rounds):
        for dtype, n, where, t in times:
            times[(dtype, n, where, t)].append(one_pass(lib, isa, q, held[dtype], n - 1, where == "near", scores, part,
                                                        z, t))
    rows = []
    for (dtype, n, where, threads), v in times.items():
        K, V, Ks, _ = held[dtype]
        per_row = D_HEAD * K.element_size() + (4 if Ks is not None else 0)  # one position of one head
        read = 2 * LAYERS * H_KV * n * per_row
        ms = statistics.median(v) * 1000
        rows.append({"cache": dtype, "context": n, "where": where, "threads": threads, "ms_30_layers": round(ms, 3),
                     "mb_read": round(read / 1e6, 1), "gb_per_s": round(read / ms / 1e6, 1)})
    print(f"{'cache':<8} {'context':>7} {'where':<5} {'threads':>7} {'ms (30 layers)':>15} {'MB read':>8} {'GB/s':>6}")
    for r in rows:
        print(f"{r['cache']:<8} {r['context']:>7} {r['where']:<5} {r['threads']:>7} {r['ms_30_layers']:>15} "
              f"{r['mb_read']:>8} {r['gb_per_s']:>6}")
    result = {"cpu": cpu_info(), "kernel": name, "rounds": args.rounds, "load_average": os.getloadavg(),
              "shape": {"n_heads": H, "n_kv_heads": H_KV, "d_head": D_HEAD, "layers": LAYERS}, "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"attention-{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
