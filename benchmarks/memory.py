"""Where chat's memory goes: RSS and peak RSS after each stage of a start and a scripted chat.

    .venv/bin/python benchmarks/memory.py                      # int4 (chat's default), 1 thread
    .venv/bin/python benchmarks/memory.py --weights fp16 --turns 3

Three kinds of process, one after the other, in one run:
  bare    `python -c "import torch"`: the RSS every bound below starts from;
  first   a start with an empty converted-weights cache: the GGUF is read and converted (and cached);
  second  a start from that cache (memory-mapped), then the scripted chat of benchmarks/chat_turns.py
          (greedy, 48 new tokens a turn, chat's KV cache kept between turns).
Each process reports, after every stage: VmRSS, the peak since the stage before (VmHWM, reset between
stages by writing 5 to /proc/self/clear_refs where the kernel allows it; else the peak so far, marked),
and RssAnon / RssFile — anonymous memory (malloc, torch's allocations) against pages of mapped files
(shared libraries, the memory-mapped cache: a page counts once it has been touched). A fourth process,
tokenizer, builds the tokenizer alone from the cache, to size it.
The bound (issue 13): peak RSS ≤ 1.5 × the weights' bytes + the bare `import torch` RSS.
Writes benchmarks/results/memory-<weights>-<threads>threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def status_mb() -> dict:
    """This process's memory counters from /proc/self/status, in MB (1e6 bytes)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in FIELDS:
                out[key] = round(int(rest.split()[0]) * 1024 / 1e6, 1)
    return out


def mappings_mb(top: int = 12) -> dict:
    """Resident MB per mapping of this process (/proc/self/smaps): [heap], [anon] (malloc's large blocks,
    torch's tensors), and each mapped file by name (libraries, the memory-mapped converted weights)."""
    rss, name = {}, None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line: address range, ..., path
                name = Path(head[5]).name if len(head) > 5 and head[5].startswith("/") else (
                    head[5] if len(head) > 5 else "[anon]")
            elif head[0] == "Rss:":
                rss[name] = rss.get(name, 0) + int(head[1])
    biggest = sorted(rss.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v * 1024 / 1e6, 1) for k, v in biggest}


def reset_peak() -> bool:
    """Start a new VmHWM window (Linux ≥ 4.0, when /proc/self/clear_refs is writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Stages:
    """RSS after each stage, and the peak within it."""

    def __init__(self):
        self.rows, self.resettable, self.t = [], reset_peak(), time.perf_counter()

    def mark(self, stage: str, **extra) -> None:
        s = status_mb()
        now = time.perf_counter()
        self.rows.append({"stage": stage, "rss_mb": s["VmRSS"], "peak_mb": s["VmHWM"],
                          "anon_mb": s["RssAnon"], "file_mb": s["RssFile"],
                          "seconds": round(now - self.t, 2), **extra})
        print(json.dumps(self.rows[-1]), file=sys.stderr, flush=True)
        reset_peak()
        self.t = time.perf_counter()


def child(kind: str, weights: str, threads: int, n_turns: int) -> dict:
    st = Stages()
    st.mark("python started")
    import torch

    torch.set_num_threads(threads)
    st.mark("import torch")
    from glassgpt.chat import Chat
    from glassgpt.convert import gguf as G
    from glassgpt.fast import cache_path, weights_bytes
    from glassgpt.generate import SampleConfig
    from glassgpt.load import load_model

    st.mark("import glassgpt")
    path = G.default_gguf_path()
    stored = cache_path(path, weights)
    st.mark("GGUF hashed (cache key)")
    if kind == "tokenizer":  # the tokenizer alone, from where a cached load takes it
        from safetensors import safe_open

        from glassgpt.tokenizer import hf_from_json

        with safe_open(str(stored), framework="pt") as f:
            tok = hf_from_json(f.metadata()["tokenizer"])
        st.mark("tokenizer built")
        from glassgpt.fast import release_free_memory

        release_free_memory()
        st.mark("its parse's free memory returned (malloc_trim)", vocab=tok.get_vocab_size())
        return {"kind": kind, "stages": st.rows}
    t = time.perf_counter()
    loaded = load_model(path, weights=weights)
    load_s = round(time.perf_counter() - t, 2)
    st.mark("model loaded" + (" (GGUF → cache)" if kind == "first" else " (from the cache)"), load_s=load_s)
    out = {"kind": kind, "load_s": load_s, "weights_mb": round(weights_bytes(loaded.model) / 1e6, 1),
           "peak_resettable": st.resettable}
    if kind == "second":
        sys.path.insert(0, str(HERE))
        from chat_turns import TURNS

        chat = Chat(loaded, sample=SampleConfig(max_new_tokens=48, temperature=0))
        with torch.inference_mode():
            for n, text in enumerate(TURNS[:n_turns], 1):
                pieces = chat.ask(text)
                next(pieces, "")
                st.mark(f"turn {n}: prefill + first token")
                for _ in pieces:
                    pass
                st.mark(f"turn {n}: answered", context_tokens=len(chat._cached_ids))
        cache = chat._cache
        out["kv_cache_capacity_mb"] = round(cache.nbytes / 1e6, 1)  # reserved; resident as tokens are written
        out["kv_cache_held_mb"] = round(cache.nbytes * cache.length / cache.capacity / 1e6, 1)
        out["mappings_mb"] = mappings_mb()
    out["stages"] = st.rows
    return out


def run_child(kind: str, args, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--weights", args.weights, "--threads", str(args.threads),
           "--turns", str(args.turns)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bare_torch() -> dict:
    """`python -c "import torch"`: its memory counters and (a second process, importing this file too) its mappings."""
    code = ("import torch\nprint(' '.join(l.split(':')[0] + '=' + l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith(('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'))))")
    line = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    kb = dict(item.split("=") for item in line.split())
    out = {k: round(int(v) * 1024 / 1e6, 1) for k, v in kb.items()}
    code = f"import sys, json, torch; sys.path.insert(0, {str(HERE)!r}); from memory import mappings_mb; " \
           "print(json.dumps(mappings_mb()))"
    out["mappings_mb"] = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                   check=True).stdout)
    return out


def cpu_report() -> dict:
    import platform

    import torch

    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {"cpu": model, "machine": platform.machine(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))}


def table(result: dict) -> str:
    lines = ["| process | stage | RSS | peak within the stage | anonymous | file-backed | s |",
             "|---|---|---|---|---|---|---|"]
    for proc in ("first", "second", "tokenizer"):
        for r in result[proc]["stages"]:
            lines.append(f"| {proc} | {r['stage']} | {r['rss_mb']:.0f} | {r['peak_mb']:.0f} | {r['anon_mb']:.0f} | "
                         f"{r['file_mb']:.0f} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="int4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--child", choices=("first", "second", "tokenizer"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.weights, args.threads, args.turns)))
        return
    with tempfile.TemporaryDirectory(prefix="glassgpt-memory-") as cache:
        env = {**os.environ, "GLASSGPT_CACHE": cache}  # an empty converted-weights cache: the first load converts
        bare = bare_torch()
        first = run_child("first", args, env)
        second = run_child("second", args, env)
        tokenizer = run_child("tokenizer", args, env)
    weights_mb = second["weights_mb"]
    peak = max(r["peak_mb"] for r in second["stages"])
    bound = round(1.5 * weights_mb + bare["VmHWM"], 1)
    result = {"weights": args.weights, "threads": args.threads, "turns": args.turns, "bare_import_torch": bare,
              "weights_mb": weights_mb, "bound_mb": bound, "chat_peak_rss_mb": peak, "within_bound": peak <= bound,
              "first_load_s": first["load_s"], "second_load_s": second["load_s"],
              "first_load_peak_rss_mb": max(r["peak_mb"] for r in first["stages"]),
              "first": first, "second": second, "tokenizer": tokenizer, "machine": cpu_report()}
    print(table(result))
    print("\nresident MB by mapping, bare `import torch` → end of the chat:")
    for name, mb in second["mappings_mb"].items():
        print(f"  {name:60s} {bare['mappings_mb'].get(name, 0):7.1f} → {mb:7.1f}")
    print(json.dumps({k: v for k, v in result.items() if k not in ("first", "second", "tokenizer", "machine")}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"memory-{args.weights}-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
