"""Decode speed of several implementations measured in turns, for a machine whose load changes minute to minute.

    .venv/bin/python benchmarks/decode_interleaved.py                      # every mode, transformers, llama.cpp
    .venv/bin/python benchmarks/decode_interleaved.py --impls fp16,int4 --rounds 9

"int4-4kpages" is int4 with its weights left in 4 KB pages (GLASSGPT_HUGE_PAGES=0; the control for
glassgpt.kernels.huge_pages, which every load of a block mode does).
"int4-2threads" (any block mode + "-2threads") is the C step on two threads (kernels/pool.c), beside one.
"int4-avx2" (any block mode + "-avx2") runs the avx2 kernel version on this CPU: what an AVX2-only CPU runs.
"int4-torchstep" is int4 through the torch lean step with a float32 cache (what every mode ran before
glassgpt/kernels/step.c): beside "int4" (the C step, float16 cache, as generation runs it) it shows what
the one-call step gains. The JSON records which step each glassgpt row ran ("c" or "torch") and its cache dtype.

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
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import MODES, LlamaLoop, Ours, llama_available, make_runners  # noqa: E402
from matvec import cpu_info, read_bandwidth  # noqa: E402

from glassgpt.decode import DecodeStep, StaticKVCache  # noqa: E402
from glassgpt.generate import decode_step  # noqa: E402
from glassgpt.kernels.step import CStep  # noqa: E402
from glassgpt.quant import BlockWeight  # noqa: E402

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


class TorchStep(Ours):
    """A weight mode through the torch lean step (DecodeStep without its C path) on a float32 cache."""

    def __init__(self, weights: str):
        super().__init__(weights)
        self.lean = DecodeStep(self.model, c=False)

    def prefill(self, ids: list[int]):
        cache = StaticKVCache(self.model.cfg, len(ids) + 2048)
        return self.model(torch.tensor([ids]), cache=cache, last_only=True)[:, -1], cache

    def step(self, token: int, cache):
        return self.lean(torch.tensor([[token]]), cache)

    def kernels(self) -> dict:
        return {**super().kernels(), "step": self.lean.ran, "cache": "float32"}


class Avx2(Ours):
    """A block mode through the avx2 kernel version (blockdot.c's and step.c's), what an AVX2-only CPU runs."""

    def __init__(self, weights: str):
        super().__init__(weights)
        for w in self.model.modules():
            if isinstance(w, BlockWeight):
                w.kernel = "avx2"  # the prompt's products
        step = decode_step(self.model)
        step.c = CStep(self.model, isa="avx2", threads=step.c.threads)  # the decode step

    def kernels(self) -> dict:
        return {**super().kernels(), "blockdot": "avx2"}


class TwoThreads(Ours):
    """A block mode whose C step shares its products with a second thread (GLASSGPT_DECODE_THREADS=2)."""

    def __init__(self, weights: str):
        super().__init__(weights)
        decode_step(self.model).c = CStep(self.model, threads=2)

    def kernels(self) -> dict:
        return {**super().kernels(), "threads": 2}


def runners_for(names: list[str]) -> dict:
    runners = make_runners([n for n in names if not n.endswith(("-torchstep", "-4kpages", "-avx2", "-2threads"))])
    runners.update({n: Avx2(n.removesuffix("-avx2")) for n in names if n.endswith("-avx2")})
    runners.update({n: TwoThreads(n.removesuffix("-2threads")) for n in names if n.endswith("-2threads")})
    runners.update({n: TorchStep(n.removesuffix("-torchstep")) for n in names if n.endswith("-torchstep")})
    for n in [n for n in names if n.endswith("-4kpages")]:  # the weights left in 4 KB pages (kernels.huge_pages)
        os.environ["GLASSGPT_HUGE_PAGES"] = "0"
        try:
            runners[n] = Ours(n.removesuffix("-4kpages"))
        finally:
            del os.environ["GLASSGPT_HUGE_PAGES"]
    return {n: runners[n] for n in names if n in runners}


def step_report(r: Ours, cache) -> dict:
    """Which decode step a glassgpt row ran and on which cache."""
    if isinstance(r, TorchStep):
        return r.kernels()
    return {**r.kernels(), "huge_page_mb": round(getattr(r.model, "huge_page_bytes", 0) / 1e6, 1),
            "step": decode_step(r.model).ran if hasattr(cache, "capacity") else "glass box",
            "cache": str(getattr(cache, "dtype", "")).removeprefix("torch.")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impls", default=",".join(MODES) + ",int4-4kpages,int4-avx2,int4-2threads,int4-torchstep,transformers,llama.cpp")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.impls.split(",")
    runners = runners_for(names)
    llama = LlamaLoop(LOOP, args.threads) if "llama.cpp" in names and llama_available() else None
    rates: dict[str, list[float]] = {n: [] for n in runners}
    steps = {}
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
                if isinstance(r, Ours):
                    steps[name] = step_report(r, cache)
            print({n: round(v[-1], 2) for n, v in rates.items()}, file=sys.stderr, flush=True)
    window = time.time() - started
    bandwidth.append(read_bandwidth())
    result = {"cpu": cpu_info(), "threads": args.threads, "rounds": args.rounds, "window_s": round(window),
              "read_gb_s": max(b["read_gb_s"] for b in bandwidth), "bandwidth": bandwidth,
              "decode_tok_s": {n: round(statistics.median(v), 2) for n, v in rates.items()},
              "bytes_mb": {n: round(r.weights_bytes() / 1e6, 1) for n, r in runners.items()},
              "kernels": steps}
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
    print(f"{'decode':<16} {'tok/s':>7} {'MB/token':>9} {'ceiling':>8} {'of ceil.':>8} {'× llama.cpp':>11} {'× transformers':>14}")
    for n, v in base.items():
        print(f"{n:<16} {v:>7} {result['bytes_mb'].get(n, '?'):>9} {result['ceiling_tok_s'].get(n, '?'):>8} "
              f"{result['of_ceiling'].get(n, '?'):>8} {result.get('ratios_vs_llama.cpp', {}).get(n, '-'):>11} "
              f"{result.get('ratios_vs_transformers', {}).get(n, '-'):>14} "
              f"{steps[n]['step'] + ' step, ' + steps[n]['cache'] + ' cache' if n in steps else ''}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"decode_interleaved-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


def llama_bytes() -> int:
    """Bytes llama.cpp reads a token: the GGUF's tensor data (every weight once; the embedding table
    too, as its unembedding is tied)."""
    from glassgpt.convert.gguf import default_gguf_path, read_gguf

    return sum(int(t.n_bytes) for t in read_gguf(default_gguf_path()).tensors)


if __name__ == "__main__":
    main()
