"""Prefill speed of a 256-token prompt: glassgpt's weight modes, transformers fp32 and llama.cpp, in turns.

    .venv/bin/python benchmarks/prefill.py                      # fp32, fp16, int4, transformers, llama.cpp
    .venv/bin/python benchmarks/prefill.py --impls fp16,transformers --rounds 9 --tokens 256

Prefill is one forward pass over the prompt, keeping the last position's logits and every layer's
keys and values. The torch implementations live in one process and take turns, each round each
prefilling the same prompt (the median over rounds is kept), so a busy minute slows all of them
(tokens per second of wall clock and of the process's CPU time, the steadier on a shared machine);
llama.cpp (its own interpreter, batched prompt evaluation, the same GGUF and threads) prefills the
same ids in a loop in a second process over the same window. Records which matmul kernel each
glassgpt mode's prompt path runs (glassgpt.quant; for BlockWeight, blockdot.c's version and why) and
the CPU's flags. Writes
benchmarks/results/prefill-<threads>threads.json.
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
from generate import LlamaLoop, llama_available, make_runners  # noqa: E402
from matvec import cpu_info  # noqa: E402

from glassgpt import kernels  # noqa: E402

LOOP = """
import os, sys, time, json, llama_cpp
path, threads, stop, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[5])
llm = llama_cpp.Llama(model_path=path, n_ctx=n + 64, n_batch=512, n_threads=threads, n_threads_batch=threads,
                      verbose=False)
ids = llm.tokenize(sys.argv[4].encode(), add_bos=False)[:n]
rates, cpu_rates, end = [], [], time.time() + 3600
while time.time() < end and not (os.path.exists(stop) and len(rates) >= 3):
    llm.reset()
    t, c = time.perf_counter(), time.process_time()
    llm.eval(ids)
    cpu_rates.append(len(ids) / (time.process_time() - c))
    rates.append(len(ids) / (time.perf_counter() - t))
print(json.dumps([rates, cpu_rates]))
"""


def prompt_kernel(model) -> str:
    """What the layer matrices' prompt path runs (the first packed matrix's own account, if it gives one)."""
    from glassgpt.quant import PackedWeight

    for m in model.modules():
        if isinstance(m, PackedWeight):
            return type(m).__name__ + (f" ({m.kernel})" if isinstance(getattr(m, "kernel", None), str) else "")
    return "x @ W, float32"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", default="fp32,fp16,int4,transformers,llama.cpp")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.impls.split(",")
    runners = make_runners(names)
    llama = LlamaLoop(LOOP, args.threads, str(args.tokens)) if "llama.cpp" in names and llama_available() else None
    rates: dict[str, list[float]] = {n: [] for n in runners}  # tokens per second of wall clock
    cpu_rates: dict[str, list[float]] = {n: [] for n in runners}  # ... and of this process's CPU time
    started = time.time()
    with torch.inference_mode():
        for r in runners.values():
            r.prefill(r.tokens(16))  # warm-up
        for _ in range(args.rounds):
            for name, r in runners.items():
                ids = r.tokens(args.tokens)
                t, c = time.perf_counter(), time.process_time()
                r.prefill(ids)
                cpu_rates[name].append(len(ids) / (time.process_time() - c))
                rates[name].append(len(ids) / (time.perf_counter() - t))
            print({n: round(v[-1], 1) for n, v in rates.items()}, file=sys.stderr, flush=True)
    result = {"cpu": cpu_info(), "threads": args.threads, "rounds": args.rounds, "prompt_tokens": args.tokens,
              "window_s": round(time.time() - started),
              "prefill_tok_s": {n: round(statistics.median(v), 1) for n, v in rates.items()},
              "prefill_tok_per_cpu_s": {n: round(statistics.median(v), 1) for n, v in cpu_rates.items()},
              "prompt_kernel": {n: prompt_kernel(r.model) for n, r in runners.items() if n != "transformers"},
              "blockdot": kernels.why()}  # the C kernel's file and the CPU flags that chose its version
    if llama is not None:
        llama_rates, llama_cpu = llama.finish() or ([], [])
        if llama_rates:
            result["prefill_tok_s"]["llama.cpp"] = round(statistics.median(llama_rates), 1)
            result["prefill_tok_per_cpu_s"]["llama.cpp"] = round(statistics.median(llama_cpu), 1)
            result["llama_cpp_rounds"] = len(llama_rates)
    for key in ("prefill_tok_s", "prefill_tok_per_cpu_s"):
        base = result[key]
        for ref in ("transformers", "llama.cpp"):
            if ref in base:
                result[f"{key}_ratios_vs_{ref}"] = {n: round(v / base[ref], 2) for n, v in base.items() if n != ref}
    print(json.dumps({k: v for k, v in result.items() if k != "cpu"}))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"prefill-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
