"""Decode speed of several implementations measured in turns, for a machine whose load changes minute to minute.

    .venv/bin/python benchmarks/decode_interleaved.py                      # fp32, fp16, int4, transformers, llama.cpp
    .venv/bin/python benchmarks/decode_interleaved.py --impls fp16,int4 --rounds 9

benchmarks/generate.py measures one implementation after another; when other jobs share the
machine, the load can change between them by several times. Here every torch implementation
lives in one process and they take turns: each round, each decodes 16 greedy tokens after the
same 64-token prompt, and the median over rounds is kept, so a busy minute slows all of them.
llama.cpp (another interpreter) decodes in a loop in a second process for the whole window
(its median over the same window; it
stops when the torch rounds do). Writes benchmarks/results/decode_interleaved-<threads>threads.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import LLAMA_PYTHON, TEXT, Ours, Theirs, llama_available  # noqa: E402

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
    ap.add_argument("--impls", default="fp32,fp16,int4,transformers,llama.cpp")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = args.impls.split(",")
    runners = {n: Theirs() if n == "transformers" else Ours(weights=n) for n in names if n != "llama.cpp"}
    llama = None
    if "llama.cpp" in names and llama_available():
        from glassgpt.convert.gguf import default_gguf_path

        stop = Path(tempfile.mkdtemp()) / "stop"  # created when the torch rounds are over
        llama = subprocess.Popen([LLAMA_PYTHON, "-c", LOOP, str(default_gguf_path()), str(args.threads), str(stop),
                                  TEXT], stdout=subprocess.PIPE, text=True)
    rates: dict[str, list[float]] = {n: [] for n in runners}
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
    result = {"threads": args.threads, "rounds": args.rounds, "window_s": round(window),
              "decode_tok_s": {n: round(statistics.median(v), 2) for n, v in rates.items()}}
    if llama is not None:
        stop.touch()
        out, _ = llama.communicate()
        llama_rates = json.loads(out.strip().splitlines()[-1]) if out.strip() else []
        if llama_rates:
            result["decode_tok_s"]["llama.cpp"] = round(statistics.median(llama_rates), 2)
            result["llama_cpp_rounds"] = len(llama_rates)
    base = result["decode_tok_s"]
    for ref in ("transformers", "llama.cpp"):
        if ref in base:
            result[f"ratios_vs_{ref}"] = {n: round(v / base[ref], 2) for n, v in base.items() if n != ref}
    print(json.dumps(result))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"decode_interleaved-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
