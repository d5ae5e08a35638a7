"""Decode time per token as the context grows, glass-box step against the lean step (glassgpt.decode).

    .venv/bin/python benchmarks/decode_context.py                          # fp32, fp16, int4; 1 thread
    .venv/bin/python benchmarks/decode_context.py --modes int4 --rounds 9 --contexts 128,1000,2000
    .venv/bin/python benchmarks/decode_context.py --answers float16   # does a half cache keep the answers?
    .venv/bin/python benchmarks/decode_context.py --modes int4 --kv float16,int8   # the 8-bit cache beside

Every variant lives in one process and they take turns (a busy minute slows all of them alike): each
round, each variant decodes 8 greedy tokens after each context length, starting from a cache filled
once by one prefill of the longest context and set back to the length (a KV cache reads only its first
`length` tokens; the 8 steps overwrite 8 of them, the same way in every variant). Variants per weight mode:

    glass-box      GPT.forward(token, cache) with kv_cache.KVCache (hooks, masks, a growing cache)
    torch-step     glassgpt.decode.DecodeStep's torch step with a float32 StaticKVCache
    lean           DecodeStep as it runs (the C step of kernels/step.c where the model qualifies: int4,
                   int8, q4a8) with a float32 StaticKVCache
    lean-float16kv the same with a float16 StaticKVCache (half the bytes a step reads from the cache);
                   --kv int8 adds an int8 one (a quarter: int8 codes and a float32 scale per row of d_head,
                   glassgpt.decode.quantize_rows), --kv bfloat16 a bfloat16 one (the torch step)
    lean-float16kv-2threads   the C step on that cache with 2 threads sharing each product and each layer's
                   attention (kernels/pool.c, kernels/attention.c; generation asks for it with
                   GLASSGPT_DECODE_THREADS=2)

`--answers DTYPE` times nothing: on the 24 prompts of tests/decode_prompts.py it compares int4's greedy
continuations (32 tokens, through the step generation runs) with a DTYPE cache against those with a float32
cache and against fp32 weights', and the largest logit difference between the two caches' steps along the
float32 cache's continuation (benchmarks/results/decode_kv_answers-DTYPE.json).

The median ms/token per context, wall clock and this thread's CPU time (on a machine shared with other
jobs the CPU time is the steadier: it leaves out the time the process waits for a core; both are
recorded), the growth (ms at the longest context ÷ at the shortest) and the
largest logit difference of each lean variant from the glass box over the timed steps go to
benchmarks/results/decode_context-<threads>threads.json with the CPU's flags and torch's capability.
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
from generate import TEXT  # noqa: E402
from matvec import cpu_info  # noqa: E402

from glassgpt.decode import DecodeStep, StaticKVCache  # noqa: E402
from glassgpt.load import load_model  # noqa: E402

STEPS = 8


def variants(loaded, ids: list[int], kv_dtypes: list[str]) -> dict:
    """name → (step function, cache) for one weight mode, every cache holding the same len(ids) tokens."""
    model = loaded.model
    exact = StaticKVCache(model.cfg, len(ids) + STEPS + 1)
    model(torch.tensor([ids]), cache=exact)  # the one prefill (GPT.forward)
    glass = model.new_cache()
    for layer, held in zip(glass.layers, exact.layers):
        layer.append(held.k.clone(), held.v.clone())
    out = {"glass-box": (lambda token, cache: model(token, cache=cache)[:, -1], glass)}

    def copied(dtype: torch.dtype = torch.float32) -> StaticKVCache:  # the float32 prefill, rounded to dtype
        cache, n = StaticKVCache(model.cfg, exact.capacity, dtype=dtype), exact.length
        for i in range(model.cfg.n_layers):
            cache.write(i, 0, exact.keys(i, n), exact.values(i, n))
        cache.advance(n)
        return cache

    c_step = DecodeStep(model).c is not None
    if c_step:  # the torch step too, to compare (elsewhere "lean" is the torch step)
        out["torch-step"] = (DecodeStep(model, c=False), copied())
    out["lean"] = (DecodeStep(model), exact)
    for name in kv_dtypes:
        out[f"lean-{name}kv"] = (DecodeStep(model), copied(getattr(torch, name)))
        if name == "float16" and c_step:
            out["lean-float16kv-2threads"] = (DecodeStep(model, threads=2), copied(torch.float16))
    return out


def answers(kv: str) -> dict:
    """int4 with a `kv` cache against int4 with a float32 cache and fp32 weights, on tests/decode_prompts.py."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from decode_prompts import CHAT, TEXT

    from glassgpt.chat import Chat
    from glassgpt.generate import SampleConfig, decode_step, generate_ids

    exact, light = load_model(None), load_model(None, weights="int4")
    ids = [exact.tokenizer.encode(t) for t in list(TEXT) + [Chat(exact, messages=[{"role": "user", "content": c}])
                                                          .prompt_text() for c in CHAT]]
    cfg = SampleConfig(max_new_tokens=32, temperature=0, stop_ids=tuple(exact.stop_ids))

    def run(model, dtype=torch.float32) -> list[list[int]]:
        model.kv_dtype = dtype  # the cache glassgpt.generate.new_cache makes
        try:
            return [[int(s[0]) for s in generate_ids(model, [i], cfg)] for i in ids]
        finally:
            del model.kv_dtype

    dtype = getattr(torch, kv)
    reference, full, half = run(exact.model), run(light.model), run(light.model, dtype)
    step, worst = decode_step(light.model), 0.0
    for prompt, continuation in zip(ids, full):  # both caches' steps along the float32 cache's continuation
        caches = [StaticKVCache(light.model.cfg, len(prompt) + len(continuation), dtype=d) for d in (torch.float32, dtype)]
        for cache in caches:
            light.model(torch.tensor([prompt]), cache=cache)
        for token in continuation[:-1]:
            a, b = (step(torch.tensor([[token]]), cache) for cache in caches)
            worst = max(worst, (a - b).abs().max().item())

    def parted(mine, theirs) -> dict:
        return {n: next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                for n, (a, b) in enumerate(zip(mine, theirs)) if a != b}

    return {"prompts": len(ids), "max_new_tokens": 32, "kv": kv, "step": step.ran,
            "identical_to_float32_cache": len(ids) - len(parted(half, full)),
            "identical_to_fp32_weights": {"float32 cache": len(ids) - len(parted(full, reference)),
                                          f"{kv} cache": len(ids) - len(parted(half, reference))},
            "parted_from_float32_cache_at": parted(half, full),
            "max_logit_diff_vs_float32_cache": round(worst, 5)}


def cache_name(cache) -> str:
    return str(cache.K.dtype).removeprefix("torch.") if hasattr(cache, "K") else "float32 (growing)"


def cache_mb(cache) -> float:
    """MB the cache holds for the tokens it has (an int8 cache: with its scales)."""
    if hasattr(cache, "K"):
        return cache.nbytes * cache.length / cache.capacity / 1e6
    return 2 * sum(layer.k.numel() for layer in cache.layers) * 4 / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="fp32,fp16,int4")
    ap.add_argument("--contexts", default="128,2000")
    ap.add_argument("--kv", default="float16,int8", help="lower-precision cache dtypes to try: float16, int8, "
                    "bfloat16 (comma-separated, or '')")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--answers", metavar="DTYPE", choices=["float16", "bfloat16", "int8"],
                    help="compare a DTYPE cache's answers with float32's instead of timing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.answers:
        with torch.inference_mode():
            result = {"cpu": cpu_info(), "threads": args.threads, **answers(args.answers)}
        print(json.dumps({k: v for k, v in result.items() if k != "cpu"}))
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"decode_kv_answers-{args.answers}.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    contexts = [int(c) for c in args.contexts.split(",")]
    kv_dtypes = [k for k in args.kv.split(",") if k]
    if set(kv_dtypes) - {"float16", "bfloat16", "int8"}:
        ap.error(f"--kv takes float16, bfloat16 and int8, got {args.kv!r}")
    runs = {}
    with torch.inference_mode():
        for mode in args.modes.split(","):
            loaded = load_model(None, weights=mode)
            ids = loaded.tokenizer.encode(TEXT)[: max(contexts) + STEPS + 1]
            t = time.perf_counter()
            for name, (step, cache) in variants(loaded, ids[: max(contexts)], kv_dtypes).items():
                runs[f"{mode} {name}"] = (step, cache)
            print(f"{mode}: prefilled {max(contexts)} tokens in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        times = {name: {n: [] for n in contexts} for name in runs}  # wall clock
        cpu = {name: {n: [] for n in contexts} for name in runs}  # this thread's CPU time (1 thread: all of it)
        drift = {name: 0.0 for name in runs}
        for r in range(args.rounds):
            for n in contexts:
                reference = {}
                for name, (step, cache) in runs.items():
                    for layer in cache.layers:  # back to n tokens (what the prefill wrote there is still held)
                        layer.length = n
                    token, logits = torch.tensor([[ids[n]]]), []
                    for _ in range(STEPS):
                        t, c = time.perf_counter(), time.thread_time()
                        out = step(token, cache)
                        token = out.argmax(-1, keepdim=True)
                        cpu[name][n].append(time.thread_time() - c)
                        times[name][n].append(time.perf_counter() - t)
                        logits.append(out)
                    mode = name.split()[0]
                    if name.endswith("glass-box"):
                        reference[mode] = torch.cat(logits)
                    elif mode in reference and r == 0:
                        drift[name] = max(drift[name], (torch.cat(logits) - reference[mode]).abs().max().item())
            print(f"round {r + 1}: " + ", ".join(f"{k} {1000 * statistics.median(v[contexts[-1]]):.1f}"
                                                  for k, v in times.items()), file=sys.stderr, flush=True)
    rows = []
    for name, by_n in times.items():
        ms = {n: round(1000 * statistics.median(v), 2) for n, v in by_n.items()}
        cpu_ms = {n: round(1000 * statistics.median(v), 2) for n, v in cpu[name].items()}
        rows.append({"variant": name, "ms_per_token": ms, "growth": round(ms[contexts[-1]] / ms[contexts[0]], 2),
                     "cpu_ms_per_token": cpu_ms, "cpu_growth": round(cpu_ms[contexts[-1]] / cpu_ms[contexts[0]], 2),
                     "max_logit_diff_vs_glass_box": round(drift[name], 5),
                     "step": getattr(runs[name][0], "ran", "glass box"), "cache": cache_name(runs[name][1]),
                     "c_threads": getattr(getattr(runs[name][0], "c", None), "threads", None),
                     "kv_cache_mb_at_longest": round(cache_mb(runs[name][1]), 1)})
    by_name = {r["variant"]: r for r in rows}
    for r in rows:  # the 2-thread step at the longest context against the 1-thread step at the shortest
        one = by_name.get(r["variant"].removesuffix("-2threads"))
        if r["variant"].endswith("-2threads") and one:
            r["longest_vs_1thread_shortest"] = round(r["ms_per_token"][contexts[-1]] / one["ms_per_token"][contexts[0]], 2)
            print(f"{r['variant']}: {r['ms_per_token'][contexts[-1]]} ms at {contexts[-1]} tokens = "
                  f"{r['longest_vs_1thread_shortest']}x the 1-thread step at {contexts[0]}")
    result = {"cpu": cpu_info(), "threads": args.threads, "rounds": args.rounds, "steps_per_round": STEPS,
              "load_average": os.getloadavg(),
              "contexts": contexts, "rows": rows}
    print(f"{'variant':<26} " + " ".join(f"{'ms @' + str(n):>9}" for n in contexts) + f" {'growth':>7} "
          + " ".join(f"{'cpu ms @' + str(n):>13}" for n in contexts) + f" {'growth':>7} {'Δlogit':>8}")
    for r in rows:
        print(f"{r['variant']:<26} " + " ".join(f"{r['ms_per_token'][n]:>9}" for n in contexts) + f" {r['growth']:>7} "
              + " ".join(f"{r['cpu_ms_per_token'][n]:>13}" for n in contexts)
              + f" {r['cpu_growth']:>7} {r['max_logit_diff_vs_glass_box']:>8}  {r['step']} step, {r['cache']} cache")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"decode_context-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
