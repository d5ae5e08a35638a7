"""llama.cpp's side of benchmarks/generate.py, run by an interpreter that has llama-cpp-python installed.

    /opt/llamavenv/bin/python benchmarks/llama_runner.py MODEL.gguf --threads 2

Prints one JSON row with the same fields and the same protocol as generate.py's glassgpt rows:
prefill of a 256-token prompt (batched), 128 greedy decode steps, ms/token at several contexts.
Imports nothing from glassgpt (this interpreter need not have torch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
        "it was the season of Darkness, it was the spring of hope, it was the winter of despair. ") * 200


def peak_rss_mb() -> float:
    """This process's peak resident set in MB (10⁶ bytes, as the weights are counted: VmHWM's kB are KiB;
    ru_maxrss would include the parent's, kept across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e6, 1)
    return -1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contexts", default="128,512,1024,2000")
    args = ap.parse_args()
    import llama_cpp
    import numpy as np

    contexts = [int(c) for c in args.contexts.split(",")]
    t = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=max(contexts) + 400, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    load_s = time.perf_counter() - t
    ids = llm.tokenize(TEXT.encode(), add_bos=False, special=False)

    n_vocab = llm.n_vocab()

    def last_argmax() -> int:  # the last evaluated token's logits, straight from the context
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        return int(np.argmax(logits))

    def prefill(tokens):
        llm.reset()
        llm.eval(tokens)
        return last_argmax()

    def step(token):
        llm.eval([token])
        return last_argmax()

    prompt = ids[:256]
    prefill(prompt[:16])  # warm-up
    prefills, decodes = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        token = prefill(prompt)
        prefills.append(len(prompt) / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(128):
            token = step(token)
        decodes.append(128 / (time.perf_counter() - t))
    per_token = {}
    for n in contexts:
        prefill(ids[:n])
        token, times = ids[n], []
        for _ in range(8):
            t = time.perf_counter()
            token = step(token)
            times.append(time.perf_counter() - t)
        per_token[n] = round(statistics.median(times) * 1000, 2)
    try:
        weights = llama_cpp.llama_model_size(llm.model)
    except Exception:
        weights = os.path.getsize(args.model)
    print(json.dumps({"impl": "llama.cpp", "threads": args.threads, "load_s": round(load_s, 2),
                      "prefill_tok_s": round(statistics.median(prefills), 1),
                      "decode_tok_s": round(statistics.median(decodes), 1), "decode_ms_by_context": per_token,
                      "peak_rss_mb": peak_rss_mb(),
                      "weights_mb": round(weights / 1e6, 1), "version": getattr(llama_cpp, "__version__", "?")}))


if __name__ == "__main__":
    main()
