"""Decode speed of several implementations measured in turns, for a machine whose load changes minute to minute.

    .venv/bin/python benchmarks/decode_interleaved.py                      # every mode, transformers, llama.cpp
    .venv/bin/python benchmarks/decode_interleaved.py --impls fp16,int4 --rounds 9

benchmarks/generate.py measures one implementation after another; when other jobs share the
machine, the load can change between them by several times. Here every torch implementation
lives in one process and they take turns: each round, each decodes 16 greedy tokens after the
same 64-token prompt, and the median over rounds is kept, so a busy minute slows all of them.
llama.cpp (another interpreter) decodes in a loop in a second process for the whole window
(its median over the same window; it
stops when the torch rounds do). Beside each: the bytes one decode step reads, the bandwidth
ceiling (read bandwidth, measured before and after in the same run, ÷ those bytes) and the
fraction of it reached; the JSON also records the CPU's flags, torch's CPU capability and which
kernel each glassgpt mode ran. Writes benchmarks/results/decode_interleaved-<threads>threads.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import MODES, LlamaLoop, Ours, llama_available, make_runners  # noqa: E402
from matvec import cpu_info, read_bandwidth  # noqa: E402

LOOP = """
import os, sys, time, json, numpy as np, llama_cpp
path, threads, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
ids = llm.tokenize(sys.argv[4].encode(), add_bos=False)[:64]
n_vocab = llm.n_vocab()
def last():
    return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))))
rates, end = [], time.time() + 3600
while time.time() < end and not (os.path.exists(stop) and len(rates) >= 3):
    llm.reset(); llm.eval(ids); tok = last()
    t = time.perf_counter()
    for _ in range(16):
        llm.eval([tok]); tok = last()
    rates.append(16 / (time.perf_counter() - t))
print(json.dumps(rates))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", default=",".join(MODES) + ",transformers,llama.cpp")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.impls.split(",")
    runners = make_runners(names)
    llama = LlamaLoop(LOOP, args.threads) if "llama.cpp" in names and llama_available() else None
    rates: dict[str, list[float]] = {n: [] for n in runners}
    bandwidth = [read_bandwidth()]
    started = time.time()
    with torch.inference_mode():
        for _ in range(args.rounds):
            for name, r in runners.items():
                logits, cache = r.prefill(r.tokens(64))
                token = int(logits.argmax())
                t = time.perf_counter()
                for _ in range(16):
                    token = int(r.step(token, cache).argmax())
                rates[name].append(16 / (time.perf_counter() - t))
            print({n: round(v[-1], 2) for n, v in rates.items()}, file=sys.stderr, flush=True)
    window = time.time() - started
    bandwidth.append(read_bandwidth())
    result = {"cpu": cpu_info(), "threads": args.threads, "rounds": args.rounds, "window_s": round(window),
              "read_gb_s": max(b["read_gb_s"] for b in bandwidth), "bandwidth": bandwidth,
              "decode_tok_s": {n: round(statistics.median(v), 2) for n, v in rates.items()},
              "bytes_mb": {n: round(r.weights_bytes() / 1e6, 1) for n, r in runners.items()},
              "kernels": {n: r.kernels() for n, r in runners.items() if isinstance(r, Ours)}}
    llama_rates = llama.finish() if llama is not None else []
    if llama_rates:
        result["decode_tok_s"]["llama.cpp"] = round(statistics.median(llama_rates), 2)
        result["llama_cpp_rounds"] = len(llama_rates)
        result["bytes_mb"]["llama.cpp"] = round(llama_bytes() / 1e6, 1)
    result["ceiling_tok_s"] = {n: round(result["read_gb_s"] * 1e3 / mb, 1) for n, mb in result["bytes_mb"].items()}
    result["of_ceiling"] = {n: round(result["decode_tok_s"][n] / c, 2) for n, c in result["ceiling_tok_s"].items()}
    base = result["decode_tok_s"]
    for ref in ("transformers", "llama.cpp"):
        if ref in base:
            result[f"ratios_vs_{ref}"] = {n: round(v / base[ref], 2) for n, v in base.items() if n != ref}
    print(json.dumps(result))
    print(f"read bandwidth {result['read_gb_s']} GB/s; {args.threads} thread(s), {args.rounds} rounds, {window:.0f} s")
    print(f"{'decode':<14} {'tok/s':>7} {'MB/token':>9} {'ceiling':>8} {'of ceil.':>8} {'× llama.cpp':>11} {'× transformers':>14}")
    for n, v in base.items():
        print(f"{n:<14} {v:>7} {result['bytes_mb'].get(n, '?'):>9} {result['ceiling_tok_s'].get(n, '?'):>8} "
              f"{result['of_ceiling'].get(n, '?'):>8} {result.get('ratios_vs_llama.cpp', {}).get(n, '-'):>11} "
              f"{result.get('ratios_vs_transformers', {}).get(n, '-'):>14}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"decode_interleaved-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


def llama_bytes() -> int:
    """Bytes llama.cpp reads a token: the GGUF's tensor data (every weight once; the embedding table
    too, as its unembedding is tied)."""
    from glassgpt.convert.gguf import default_gguf_path, read_gguf

    return sum(int(t.n_bytes) for t in read_gguf(default_gguf_path()).tensors)


if __name__ == "__main__":
    main()
