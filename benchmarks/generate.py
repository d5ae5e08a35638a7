"""Generation speed on SmolLM2-135M-Instruct: every glassgpt weight mode, transformers and llama.cpp, one GGUF.

    .venv/bin/python benchmarks/generate.py                  # every implementation, table + JSON + plot
    .venv/bin/python benchmarks/generate.py --quick          # fewer repeats, shorter contexts
    .venv/bin/python benchmarks/generate.py --impls glassgpt-int4,llama.cpp --threads 1
    .venv/bin/python benchmarks/generate.py --drift fp16,int4   # answers and logit drift of modes vs fp32

Each implementation runs in its own process, one after the other, so its peak RSS is its own.
Measured: load time (glassgpt: a second load, from the converted-weights cache), prefill tokens/s
(a 256-token prompt, one forward pass, last position's logits only), decode tokens/s (128 new
tokens, greedy, one token a step with the KV cache), decode ms/token as the context grows,
peak RSS and the bytes of weights one decode step reads (glassgpt: glassgpt.fast.decode_bytes). The bandwidth ceiling of a row is read
bandwidth ÷ those bytes, with read bandwidth measured in the same run (benchmarks/matvec.py's
large-array read, before and after; the larger is kept). The JSON records CPU flags and torch's
CPU capability.

llama.cpp runs when /opt/llamavenv/bin/python (or $LLAMA_PYTHON) can import llama_cpp: the
same GGUF file, the same threads, through benchmarks/llama_runner.py. Its prefill is batched.
On a shared machine compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from llama_runner import peak_rss_mb  # one reading of peak memory; that module is stdlib-only

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
        "it was the season of Darkness, it was the spring of hope, it was the winter of despair. ") * 200
MODES = ("fp32", "fp16", "bf16", "int8", "int4", "q4a8")
LLAMA_PYTHON = os.environ.get("LLAMA_PYTHON", "/opt/llamavenv/bin/python")


# ----------------------------------------------------------------------------- the implementations


class Ours:
    def __init__(self, weights: str = "fp32"):
        from glassgpt.load import load_model

        t = time.perf_counter()  # a second load: main() converted the GGUF into the cache in another process
        self.loaded = load_model(None, weights=weights)
        self.load_s = time.perf_counter() - t
        self.model = self.loaded.model

    def tokens(self, n: int) -> list[int]:
        return self.loaded.tokenizer.encode(TEXT)[:n]

    def prefill(self, ids: list[int]):
        """The prompt through GPT.forward into the cache generation uses (a StaticKVCache for the lean step)."""
        from glassgpt.generate import new_cache

        cache = new_cache(self.model, len(ids) + 2048)
        logits = self.model(torch.tensor([ids]), cache=cache, last_only=True)
        return logits[:, -1], cache

    def step(self, token: int, cache):
        """One token as glassgpt generation decodes it: the lean step (glassgpt.decode) where the model allows."""
        from glassgpt.generate import decode_step, supports

        if supports(self.model) and hasattr(cache, "capacity"):
            return decode_step(self.model)(torch.tensor([[token]]), cache)
        return self.model(torch.tensor([[token]]), cache=cache)[:, -1]

    def weights_bytes(self) -> int:
        """Bytes one decode step reads (a packed unembedding replaces the float32 W_E in the logits)."""
        from glassgpt.fast import decode_bytes

        return decode_bytes(self.model)

    def kernels(self) -> dict:
        from glassgpt.fast import kernel_report

        return kernel_report(self.model)


class Theirs:
    def __init__(self):
        from transformers import AutoModelForCausalLM

        from glassgpt.convert.gguf import default_gguf_path
        from glassgpt.load import load_model

        path = default_gguf_path()
        t = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                          dtype=torch.float32).eval()
        self.load_s = time.perf_counter() - t
        self.tok = load_model(None).tokenizer  # same ids (tested); the glassgpt model is dropped here

    def tokens(self, n: int) -> list[int]:
        return self.tok.encode(TEXT)[:n]

    def prefill(self, ids):
        from transformers import DynamicCache

        cache = DynamicCache()
        out = self.model(torch.tensor([ids]), past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], out.past_key_values

    def step(self, token, cache):
        out = self.model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        return out.logits[:, -1]

    def weights_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())


# ----------------------------------------------------------------------------- measuring one implementation


def measure(impl: str, repeats: int, contexts: list[int], threads: int) -> dict:
    torch.set_num_threads(threads)
    runner = Theirs() if impl == "transformers" else Ours(weights=impl.split("-")[1])
    prompt = runner.tokens(256)
    prefill, decode = [], []
    with torch.inference_mode():
        runner.prefill(prompt[:16])  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            logits, cache = runner.prefill(prompt)
            prefill.append(len(prompt) / (time.perf_counter() - t))
            token = int(logits.argmax())
            t = time.perf_counter()
            for _ in range(128):
                token = int(runner.step(token, cache).argmax())
            decode.append(128 / (time.perf_counter() - t))
        per_token = {}
        long_prompt = runner.tokens(max(contexts) + 8)
        for n in contexts:
            _, cache = runner.prefill(long_prompt[:n])
            times = []
            token = long_prompt[n]
            for _ in range(8):
                t = time.perf_counter()
                token = int(runner.step(token, cache).argmax())
                times.append(time.perf_counter() - t)
            per_token[n] = round(statistics.median(times) * 1000, 2)
    return {"impl": impl, "threads": threads, "load_s": round(runner.load_s, 2),
            "prefill_tok_s": round(statistics.median(prefill), 1), "decode_tok_s": round(statistics.median(decode), 1),
            "decode_ms_by_context": per_token, "peak_rss_mb": peak_rss_mb(),
            "weights_mb": round(runner.weights_bytes() / 1e6, 1),
            **({"kernels": runner.kernels()} if isinstance(runner, Ours) else {})}


def bare_torch_rss() -> float:
    """Peak RSS of a bare `python -c "import torch"`, in MB (10⁶ bytes), as peak_rss_mb counts."""
    code = ("import torch; print(next(int(l.split()[1]) * 1024 / 1e6 for l in open('/proc/self/status') "
            "if l.startswith('VmHWM:')))")
    return round(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout), 1)


def llama_available() -> bool:
    if not Path(LLAMA_PYTHON).is_file():
        return False
    return subprocess.run([LLAMA_PYTHON, "-c", "import llama_cpp"], capture_output=True).returncode == 0


def make_runners(names: list[str]) -> dict:
    """The in-process implementations named (glassgpt weight modes and "transformers"); llama.cpp runs apart."""
    return {n: Theirs() if n == "transformers" else Ours(weights=n) for n in names if n != "llama.cpp"}


class LlamaLoop:
    """llama.cpp timing itself in a loop in its own interpreter while the torch implementations take turns.

    `loop` is the script it runs (argv: GGUF path, threads, stop-file, TEXT, *extra); it prints its rates as
    one JSON line once the stop file exists. `finish()` makes that file and returns the rates ([] if none)."""

    def __init__(self, loop: str, threads: int, *extra: str):
        from glassgpt.convert.gguf import default_gguf_path

        self.stop = Path(tempfile.mkdtemp()) / "stop"  # created when the torch rounds are over
        self.process = subprocess.Popen([LLAMA_PYTHON, "-c", loop, str(default_gguf_path()), str(threads),
                                         str(self.stop), TEXT, *extra], stdout=subprocess.PIPE, text=True)

    def finish(self):
        self.stop.touch()
        out, _ = self.process.communicate()
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else []


# ----------------------------------------------------------------------------- answers and drift


def drift(modes: list[str], threads: int, max_new_tokens: int = 32) -> dict:
    """Each mode against fp32 on tests/decode_prompts.py: greedy continuations (identical or where they part)
    and the largest logit difference over prompt + fp32's continuation."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from decode_prompts import CHAT, TEXT

    from glassgpt.chat import Chat
    from glassgpt.generate import SampleConfig, generate_ids
    from glassgpt.load import load_model

    torch.set_num_threads(threads)
    exact = load_model(None)
    prompts = list(TEXT) + [Chat(exact, messages=[{"role": "user", "content": c}]).prompt_text() for c in CHAT]
    ids = [exact.tokenizer.encode(p) for p in prompts]
    cfg = SampleConfig(max_new_tokens=max_new_tokens, temperature=0, stop_ids=tuple(exact.stop_ids))

    def answers(model):
        with torch.inference_mode():
            return [[int(s[0]) for s in generate_ids(model, [i], cfg)] for i in ids]

    reference = answers(exact.model)
    out = {"prompts": len(ids), "max_new_tokens": max_new_tokens, "modes": {}}
    for mode in modes:
        model = load_model(None, weights=mode).model
        mine = answers(model)
        with torch.inference_mode():
            worst = max((model(torch.tensor([i + r])) - exact.model(torch.tensor([i + r]))).abs().max().item()
                        for i, r in zip(ids, reference))
        parted = {n: next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                  for n, (a, b) in enumerate(zip(mine, reference)) if a != b}
        out["modes"][mode] = {"identical": len(ids) - len(parted), "parted_at_token": parted,
                              "max_logit_drift": round(worst, 4)}
        print(mode, out["modes"][mode], file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------- the table and the plot


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="threads for every implementation (2 as in the issue; "
                                                           "on a busy shared 2-core machine 1 is steadier)")
    ap.add_argument("--impls", help="comma-separated subset of glassgpt-<mode>, transformers, llama.cpp")
    ap.add_argument("--drift", help="compare these modes (comma-separated) with fp32 instead of timing")
    ap.add_argument("--impl", help=argparse.SUPPRESS)  # child process: measure one implementation
    args = ap.parse_args()
    if args.drift:
        result = {"cpu_threads": args.threads, **drift(args.drift.split(","), args.threads)}
        print(json.dumps(result))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "drift.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    repeats, contexts = (2, [128, 2000]) if args.quick else (3, [128, 512, 1024, 2000])
    if args.impl:  # a child: print the row
        print(json.dumps(measure(args.impl, repeats, contexts, args.threads)))
        return
    from matvec import cpu_info, read_bandwidth

    from glassgpt.convert.gguf import default_gguf_path

    impls = args.impls.split(",") if args.impls else [f"glassgpt-{m}" for m in MODES] + ["transformers", "llama.cpp"]
    if "llama.cpp" in impls and not llama_available():
        print(f"llama.cpp: {LLAMA_PYTHON} cannot import llama_cpp; skipped", file=sys.stderr)
        impls.remove("llama.cpp")
    torch.set_num_threads(args.threads)
    bandwidth = [read_bandwidth()]
    rows = []
    for impl in impls:
        if impl == "llama.cpp":
            cmd = [LLAMA_PYTHON, str(HERE / "llama_runner.py"), str(default_gguf_path()), "--threads", str(args.threads),
                   "--repeats", str(repeats), "--contexts", ",".join(map(str, contexts))]
        else:
            if impl.startswith("glassgpt-"):  # fill the converted-weights cache, so the timed process loads from it
                subprocess.run([sys.executable, "-c", f"from glassgpt.load import load_model; "
                                f"load_model(None, weights={impl.split('-')[1]!r})"], check=True)
            cmd = [sys.executable, __file__, "--impl", impl, "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{impl} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {impl}: {rows[-1]}", file=sys.stderr)
    bandwidth.append(read_bandwidth())
    read = max(b["read_gb_s"] for b in bandwidth)
    for r in rows:
        r["ceiling_tok_s"] = round(read * 1e9 / (r["weights_mb"] * 1e6), 1)
        r["of_ceiling"] = round(r["decode_tok_s"] / r["ceiling_tok_s"], 2)
        ms = r["decode_ms_by_context"]
        first, last = min(ms, key=int), max(ms, key=int)
        r["decode_growth"] = round(ms[last] / ms[first], 2)  # ms/token at the longest context ÷ at 128
    result = {"cpu": cpu_info(), "bandwidth": bandwidth, "read_gb_s": read, "bare_torch_rss_mb": bare_torch_rss(),
              "rows": rows}
    ref = {r["impl"]: r for r in rows}
    for base in ("transformers", "llama.cpp"):
        if base in ref:
            result[f"ratios_vs_{base}"] = {
                r["impl"]: {"decode": round(r["decode_tok_s"] / ref[base]["decode_tok_s"], 2),
                            "prefill": round(r["prefill_tok_s"] / ref[base]["prefill_tok_s"], 2)}
                for r in rows if r["impl"] != base}
    print(json.dumps(result["cpu"]))
    print(f"read bandwidth {read} GB/s; bare `import torch` RSS {result['bare_torch_rss_mb']} MB")
    print(f"{'implementation':<16} {'load s':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'ceiling':>8} "
          f"{'of ceil.':>8} {'weights MB':>11} {'peak RSS MB':>12} {'ms/tok growth':>14}")
    for r in rows:
        print(f"{r['impl']:<16} {r['load_s']:>7} {r['prefill_tok_s']:>14} {r['decode_tok_s']:>13} {r['ceiling_tok_s']:>8} "
              f"{r['of_ceiling']:>8} {r['weights_mb']:>11} {r['peak_rss_mb']:>12} {r['decode_growth']:>14}")
    print("decode ms/token by context:", {r["impl"]: r["decode_ms_by_context"] for r in rows})
    for base in ("transformers", "llama.cpp"):
        if f"ratios_vs_{base}" in result:
            print(f"ratios vs {base}:", result[f"ratios_vs_{base}"])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"generate-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, RESULTS / f"decode_vs_context-{args.threads}threads.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        xs = sorted(int(k) for k in r["decode_ms_by_context"])
        ax.plot(xs, [r["decode_ms_by_context"][str(k)] if str(k) in r["decode_ms_by_context"] else
                     r["decode_ms_by_context"][k] for k in xs], marker="o", label=r["impl"])
    ax.set_xlabel("tokens in the context")
    ax.set_ylabel("decode time per token (ms)")
    ax.set_title(f"SmolLM2-135M, {rows[0]['threads']} CPU thread(s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
