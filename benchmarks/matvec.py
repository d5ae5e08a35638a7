"""The decode matrix-vector products of SmolLM2-135M, per weight format, against this machine's read bandwidth.

    .venv/bin/python benchmarks/matvec.py                # 1 thread; writes results/matvec-1threads.json
    .venv/bin/python benchmarks/matvec.py --threads 2
    .venv/bin/python benchmarks/matvec.py --formats fp32,q4x2-avx512-vnni,q4x2-avx2 --prompt 256

Decoding one token multiplies one activation vector by every weight matrix once: 30 layers of
W_Q, W_K, W_V, W_O (576×576, 576×192 twice, 576×576), W_gate, W_up (576×1536) and W_down
(1536×576), then the tied unembedding (576×49152). Each format below runs that whole set
through the class glassgpt uses for it (glassgpt.quant), so the conversions of the activations
are counted too, with the unembedding as the mode stores it (float32 beside fp16/bf16 layers,
8-bit blocks beside 4-bit blocks; its time alone is a column). Rows:
    fp32, fp16, bf16            torch's own matrix-vector products
    aten-int8pack/int4pack      torch's packed int8/int4 kernels (bf16 activations): the old modes
    q8x2-*, q4x2-*, q4x1-*      glassgpt/kernels/blockdot.c, 8- or 4-bit blocks, two or one int8
                                activation passes, in each version this CPU runs (avx512-vnni, avx2);
                                q4x2 is the int4 mode, q4x1 the q4a8 mode, q8x2 the int8 mode; their
                                weights in 2 MB pages, as a load puts them (glassgpt.kernels.huge_pages)
    q4x2-*-4kpages              the control: the same weights left in 4 KB pages
The ceiling of a format is read bandwidth ÷ its bytes; read bandwidth is measured in the same run by
summing a 512 MB array with torch (and, for reference, copying one). Beside it, what the kernels' own
memory access can reach: step.c's stream_read (every byte summed, nothing else) over 256 MB in 4 KB or
2 MB pages, on 1 and 2 threads (the pool the decode step shares its products with).
A prompt's products are a column too: one layer's seven matrices times `--prompt` rows (256 by
default; 0 skips it), as prefill runs them — blockdot.c then goes through each tile a few rows
at a time — and the prompt tokens/s those products alone would allow over 30 layers.
The formats are timed round-robin, several rounds, and the median is kept, so a busy machine
slows them all alike. The JSON records the CPU's flags and torch's CPU capability, because
which kernel is fast is CPU-specific (the half-precision trick was fast on one AMD machine and
no faster than fp32 on an Intel one).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from glassgpt import kernels
from glassgpt.quant import BlockWeight, FullWeight, HalfWeight, Int4Weight, Int8Weight

RESULTS = Path(__file__).resolve().parent / "results"
D, D_MLP, D_KV, D_VOCAB, N_LAYERS = 576, 1536, 192, 49152, 30
LAYER_SHAPES = [(D, D), (D, D_KV), (D, D_KV), (D, D), (D, D_MLP), (D, D_MLP), (D_MLP, D)]  # (d_in, d_out)
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
         "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")

FORMATS = {  # name: how one (d_in, d_out) float32 matrix is stored (and which kernel multiplies it)
    "fp32": FullWeight,
    "fp16": lambda W: HalfWeight(W, torch.float16),
    "bf16": lambda W: HalfWeight(W, torch.bfloat16),
    "aten-int8pack": Int8Weight.quantize,  # torch's packed kernels (bf16 activations), the previous int8/int4
    "aten-int4pack": Int4Weight.quantize,
}
for _isa in kernels.usable():  # glassgpt's blockdot.c, each version this CPU runs
    FORMATS[f"q8x2-{_isa}"] = lambda W, isa=_isa: _block(W, 8, 2, isa)
    FORMATS[f"q4x2-{_isa}"] = lambda W, isa=_isa: _block(W, 4, 2, isa)
    FORMATS[f"q4x1-{_isa}"] = lambda W, isa=_isa: _block(W, 4, 1, isa)
CONTROLS = [f"q4x2-{isa}-4kpages" for isa in kernels.usable()[:1]]  # the int4 mode's weights left in 4 KB pages
UNEMBEDDING = {  # what a mode stores the unembedding as, when it is not the layers' format
    "fp16": FullWeight, "bf16": FullWeight,  # the fp16/bf16 modes keep a float32 unembedding
    **{f: (lambda W, f=f: _block(W, 8, 2 if "x2" in f else 1, f.split("-", 1)[1])) for f in FORMATS if f.startswith("q4")},
}


def _block(W: torch.Tensor, bits: int, terms: int, isa: str) -> BlockWeight:
    w = BlockWeight.quantize(W, bits, terms=terms)
    w.kernel = isa
    return w


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "processor": platform.processor(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "model" not in info:
            info["model"] = value.strip()
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            info["flags"] = [f for f in FLAGS if f in present]
            break
    return info


def read_bandwidth(mb: int = 512, rounds: int = 5) -> dict:
    """GB/s reading a large float32 array (sum) and copying one (bytes read + written / 2)."""
    a = torch.randn(mb * 2**20 // 4)
    b = torch.empty_like(a)
    best_sum, best_copy = 0.0, 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        a.sum()
        best_sum = max(best_sum, a.numel() * 4 / (time.perf_counter() - t) / 1e9)
        t = time.perf_counter()
        b.copy_(a)
        best_copy = max(best_copy, a.numel() * 4 / (time.perf_counter() - t) / 1e9)
    return {"read_gb_s": round(best_sum, 1), "copy_gb_s": round(best_copy, 1)}


def c_read(mb: int, threads: int, huge: bool, rounds: int = 5) -> float:
    """GB/s of step.c's stream_read (nothing but 64-bit adds of every byte, in 1 MB pieces shared by `threads`
    threads as the products are) over mb MB in 4 KB pages or, huge, in memory madvised for 2 MB pages."""
    import ctypes
    import mmap

    lib = kernels.library()
    lib.stream_read.restype = ctypes.c_int64
    lib.stream_read.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    n = mb << 20
    if huge:
        arena = kernels.huge_arena(n)
        if arena is None:
            return 0.0
        memory, at = arena
    else:
        memory, at = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), 0
        kernels._libc().madvise(ctypes.addressof(ctypes.c_char.from_buffer(memory)), n, 15)  # MADV_NOHUGEPAGE
    buf = torch.frombuffer(memory, dtype=torch.uint8, count=n, offset=at)
    buf.fill_(1)
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        total = lib.stream_read(buf.data_ptr(), n, threads)
        best = max(best, n / (time.perf_counter() - t) / 1e9)
        assert total == ctypes.c_int64(n // 8 * 0x0101010101010101).value  # every byte read, once
    del buf
    return round(best, 1)


def build(fmt: str, seed: int = 0) -> tuple[list, int]:
    """Every decode matrix as the mode using `fmt` stores it: (weights, bytes). The unembedding is
    the last one (float32 beside fp16/bf16 layers, 8-bit blocks beside 4-bit ones). Block weights are
    moved into 2 MB pages as a load does (kernels.huge_pages), except in a format named ...-4kpages."""
    g = torch.Generator().manual_seed(seed)
    base = fmt.removesuffix("-4kpages")
    weights = [FORMATS[base](torch.randn(d_in, d_out, generator=g) * 0.02) for d_in, d_out in LAYER_SHAPES * N_LAYERS]
    weights.append(UNEMBEDDING.get(base, FORMATS[base])(torch.randn(D, D_VOCAB, generator=g) * 0.02))
    if not fmt.endswith("-4kpages"):
        kernels.huge_pages(torch.nn.ModuleList(weights))
    return weights, sum(w.nbytes for w in weights)


@torch.inference_mode()
def one_token(weights: list) -> tuple[float, float]:
    """Seconds for every matrix-vector product of one decode step, and for the unembedding's alone."""
    xs = {w.d_in: torch.randn(1, w.d_in) for w in weights}
    t = time.perf_counter()
    for w in weights[:-1]:
        w(xs[w.d_in])
    u = time.perf_counter()
    weights[-1](xs[weights[-1].d_in])
    return time.perf_counter() - t, time.perf_counter() - u


@torch.inference_mode()
def one_prompt_layer(weights: list, n: int) -> float:
    """Seconds for one layer's seven products of an n-token prompt (x (n, d_in) for each matrix)."""
    xs = {w.d_in: torch.randn(n, w.d_in) for w in weights[:len(LAYER_SHAPES)]}
    t = time.perf_counter()
    for w in weights[:len(LAYER_SHAPES)]:
        w(xs[w.d_in])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--formats", default=",".join([*FORMATS, *CONTROLS]))
    ap.add_argument("--prompt", type=int, default=256, help="rows of the prompt-shaped products (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    formats = args.formats.split(",")
    built = {f: build(f) for f in formats}
    times: dict[str, list[float]] = {f: [] for f in formats}
    unembed: dict[str, list[float]] = {f: [] for f in formats}
    prompt: dict[str, list[float]] = {f: [] for f in formats}
    for f in formats:
        one_token(built[f][0])  # warm-up
    bandwidth = read_bandwidth()
    for _ in range(args.rounds):  # round-robin: a busy moment slows every format alike
        for f in formats:
            whole, last = one_token(built[f][0])
            times[f].append(whole)
            unembed[f].append(last)
            if args.prompt:
                prompt[f].append(one_prompt_layer(built[f][0], args.prompt))
    bandwidth_after = read_bandwidth()
    read = max(bandwidth["read_gb_s"], bandwidth_after["read_gb_s"])
    c_reads = {f"{pages} pages, {n} thread{'s' * (n > 1)}": c_read(256, n, pages == "2 MB")
               for n in sorted({1, 2, args.threads}) for pages in ("4 KB", "2 MB")} if kernels.usable() else {}
    rows = []
    for f in formats:
        s = statistics.median(times[f])
        nbytes = built[f][1]
        ceiling = read * 1e9 / nbytes
        rows.append({"format": f, "mb": round(nbytes / 1e6, 1), "ms_per_token": round(s * 1000, 2),
                     "gb_s": round(nbytes / s / 1e9, 2), "tokens_s": round(1 / s, 1),
                     "ceiling_tokens_s": round(ceiling, 1), "of_ceiling": round(1 / s / ceiling, 2),
                     "unembedding_ms": round(statistics.median(unembed[f]) * 1000, 2)})
        if args.prompt:
            p = statistics.median(prompt[f])
            rows[-1].update(prompt_ms_per_layer=round(p * 1000, 2), prompt_tokens_s=round(args.prompt / (N_LAYERS * p), 1))
    result = {"cpu": cpu_info(), "blockdot": {"chosen": kernels.kernel(), "why": kernels.why()},
              "bandwidth": {"before": bandwidth, "after": bandwidth_after, "c_stream_read_gb_s": c_reads}, "rows": rows,
              "prompt_rows": args.prompt,
              "note": "one decode step's matrix-vector products of SmolLM2-135M (210 layer matrices + the "
                      "unembedding), median of round-robin rounds; prompt_*: one layer's 7 products of "
                      "prompt_rows rows, and the tokens/s those products alone allow over 30 layers"}
    print(json.dumps(result["cpu"]))
    print(f"read bandwidth {read} GB/s (copy {bandwidth['copy_gb_s']} GB/s); step.c's stream_read, GB/s: "
          + ", ".join(f"{k} {v}" for k, v in c_reads.items()))
    print(f"{'format':<18} {'MB':>7} {'ms/token':>9} {'unembed ms':>10} {'GB/s':>6} {'tokens/s':>9} {'ceiling':>8} "
          f"{'of ceiling':>10}" + (f" {'prompt ms/layer':>15} {'prompt tok/s':>12}" if args.prompt else ""))
    for r in rows:
        print(f"{r['format']:<18} {r['mb']:>7} {r['ms_per_token']:>9} {r['unembedding_ms']:>10} {r['gb_s']:>6} "
              f"{r['tokens_s']:>9} {r['ceiling_tokens_s']:>8} {r['of_ceiling']:>10}"
              + (f" {r['prompt_ms_per_layer']:>15} {r['prompt_tokens_s']:>12}" if args.prompt else ""))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"matvec-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
