"""Load test for `glassgpt serve`: 20 concurrent clients on loopback, every request answered (or 429).

Starts the explorer in a subprocess (torch limited to 2 threads), then:
  phase 1 — each client refreshes the page `rounds` times, as the page does when the prompt
            changes: /api/analyze, /api/attention, /api/lens, /api/pipeline, one after the other;
            beyond the server's heavy-request limit a request is answered 429 at once;
  phase 2 — every client asks for a short generation at the same moment: the server streams
            `max_generations` of them and answers the rest 429 at once;
  phase 3 — one generation's decode rate (tokens/s) alone, then while 20 clients keep refreshing
            the page: the fair lock lets each decode step wait behind at most one full forward pass.
The server's resident memory (RSS) is read at the start, at its peak and after the load.
Prints a table and writes benchmarks/results/serve_load.json.

    .venv/bin/python benchmarks/serve_load.py                 # SmolLM2-135M (the default model)
    .venv/bin/python benchmarks/serve_load.py --model runs/x  # any model glassgpt loads
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PAGE = ("/api/analyze", "/api/attention", "/api/lens", "/api/pipeline")  # what the page asks on a new prompt
PROMPTS = ["The capital of France is", "Once upon a time, a small robot", "def fibonacci(n):",
           "The mitochondria is the powerhouse of", "Water boils at a temperature of"]


def serve(args) -> None:
    """The server process."""
    import torch
    import uvicorn

    from glassgpt.web import Limits, create_app

    torch.set_num_threads(2)
    app = create_app(args.model, limits=Limits(max_generations=args.max_generations))
    app.state.registry.get(app.state.registry.entries()[0].id)  # load before the clients come
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_clients(n: int, work) -> tuple[list, float]:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def client(i: int) -> None:
        barrier.wait()  # all start together
        results[i] = work(i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model for the server (default: SmolLM2)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2, help="page refreshes per client in phase 1")
    p.add_argument("--max-generations", type=int, default=2)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = p.parse_args()
    if args.serve:
        serve(args)
        return 0

    if not args.port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args.port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--serve", "--port", str(args.port), "--max-generations", str(args.max_generations)]
    if args.model:
        cmd += ["--model", args.model]
    server = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                models = httpx.get(url + "/api/models", timeout=2).json()["models"]
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
        model = models[0]

        def page_refreshes(i: int, rounds: int | None = None, until=None) -> list[tuple[str, int, float]]:
            out = []
            with httpx.Client(base_url=url, timeout=300) as http:
                r = 0
                while (r < (rounds or args.rounds)) if until is None else not until.is_set():
                    body = {"prompt": PROMPTS[(i + r) % len(PROMPTS)]}
                    for path in PAGE:
                        t = time.perf_counter()
                        status = http.post(path, json=body).status_code
                        out.append((path, status, time.perf_counter() - t))
                        if status == 429 and until is not None:
                            time.sleep(0.2)  # a busy server: back off a little, as a person would
                    r += 1
            return out

        def decode_rate(n_tokens: int = 32) -> dict:
            """One greedy generation: (pieces − 1) / (time from the first piece to the last)."""
            with httpx.Client(base_url=url, timeout=600) as http:
                body = {"prompt": PROMPTS[0], "max_new_tokens": n_tokens, "temperature": 0}
                times = []
                with http.stream("POST", "/api/generate", json=body) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: {\"text\""):
                            times.append(time.perf_counter())
                gaps = [b - a for a, b in zip(times, times[1:])]
                return {"pieces": len(times), "tokens_per_s": (len(times) - 1) / (times[-1] - times[0]),
                        "max_gap_s": max(gaps), "p50_gap_s": percentile(gaps, 50)}

        def rss_mb(key: str = "VmRSS") -> float:
            for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
            return float("nan")

        def one_generation(i: int) -> tuple[int, float, float | None]:
            with httpx.Client(base_url=url, timeout=300) as http:
                t = time.perf_counter()
                body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_new_tokens": 16, "temperature": 0}
                with http.stream("POST", "/api/generate", json=body) as r:
                    first = None
                    for line in r.iter_lines():
                        if first is None and line.startswith("data: {\"text\""):
                            first = time.perf_counter() - t
                    return r.status_code, time.perf_counter() - t, first

        httpx.post(url + "/api/analyze", json={"prompt": "warm up"}, timeout=300)
        alone = page_refreshes(0) + page_refreshes(1)  # one client: the latency without queueing
        rss_start = rss_mb()
        refreshes, wall1 = run_clients(args.clients, page_refreshes)
        flat = [x for per_client in refreshes for x in per_client]
        gens, wall2 = run_clients(args.clients, one_generation)
        solo_rate = decode_rate()
        stop = threading.Event()
        mixed_box: dict = {}

        def mixed_client(i: int):
            if i == 0:  # the generation, started once the others are busy
                time.sleep(1.0)
                mixed_box["rate"] = decode_rate()
                stop.set()
                return []
            return page_refreshes(i, until=stop)

        mixed, wall3 = run_clients(args.clients + 1, mixed_client)
        mixed_flat = [x for per_client in mixed for x in per_client]
        rss_peak = rss_mb("VmHWM")
        time.sleep(3)
        rss_end = rss_mb()
    finally:
        server.terminate()
        server.wait(timeout=30)

    rows = []
    for path in (*PAGE, "all"):
        lat = [t for p_, s, t in flat if path in ("all", p_)]
        ok = sum(1 for p_, s, t in flat if path in ("all", p_) and s == 200)
        busy = sum(1 for p_, s, t in flat if path in ("all", p_) and s == 429)
        solo = [t for p_, s, t in alone if path in ("all", p_)]
        rows.append({"endpoint": path, "requests": len(lat), "ok": ok, "busy_429": busy,
                     "p50_ms": 1000 * percentile(lat, 50),
                     "p99_ms": 1000 * percentile(lat, 99), "max_ms": 1000 * max(lat),
                     "alone_p50_ms": 1000 * percentile(solo, 50)})
    streamed = [g for g in gens if g[0] == 200]
    refused = [g for g in gens if g[0] == 429]
    result = {
        "model": model["label"], "clients": args.clients, "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), torch threads 2",
        "phase1": {"wall_s": wall1, "requests_per_s": len(flat) / wall1, "rows": rows,
                   "all_answered": all(s in (200, 429) for _, s, _ in flat)},
        "phase2": {"wall_s": wall2, "streamed": len(streamed), "refused_429": len(refused),
                   "other": len(gens) - len(streamed) - len(refused), "max_generations": args.max_generations,
                   "stream_total_s": [round(g[1], 3) for g in streamed],
                   "first_piece_s": [round(g[2], 3) for g in streamed if g[2] is not None],
                   "refusal_p99_ms": 1000 * percentile([g[1] for g in refused], 99) if refused else None},
        "phase3": {"alone": solo_rate, "under_load": mixed_box.get("rate"), "wall_s": wall3,
                   "load_requests": len(mixed_flat), "load_ok": sum(1 for _, s, _ in mixed_flat if s == 200),
                   "load_429": sum(1 for _, s, _ in mixed_flat if s == 429),
                   "load_other": sum(1 for _, s, _ in mixed_flat if s not in (200, 429))},
        "rss_mb": {"start": rss_start, "peak": rss_peak, "end": rss_end},
    }
    print(f"\nglassgpt serve — {model['label']}, {args.clients} concurrent clients on loopback ({result['machine']})")
    print(f"phase 1: {len(flat)} requests in {wall1:.1f} s ({result['phase1']['requests_per_s']:.1f}/s), "
          f"every one answered 200 or 429: {result['phase1']['all_answered']}")
    print(f"{'endpoint':<20}{'requests':>9}{'ok':>6}{'429':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'alone p50':>11}")
    for r in rows:
        print(f"{r['endpoint']:<20}{r['requests']:>9}{r['ok']:>6}{r['busy_429']:>6}{r['p50_ms']:>10.0f}"
              f"{r['p99_ms']:>10.0f}{r['max_ms']:>10.0f}{r['alone_p50_ms']:>11.0f}")
    ph2 = result["phase2"]
    print(f"phase 2: {args.clients} generations at once (16 tokens, cap {args.max_generations}): "
          f"{ph2['streamed']} streamed, {ph2['refused_429']} refused 429"
          + (f" (p99 {ph2['refusal_p99_ms']:.0f} ms)" if refused else "") + ", "
          f"{ph2['other']} other")
    ph3 = result["phase3"]
    under = ph3["under_load"] or {"tokens_per_s": float("nan"), "max_gap_s": float("nan")}
    print(f"phase 3: generation alone {ph3['alone']['tokens_per_s']:.1f} tokens/s (longest gap "
          f"{ph3['alone']['max_gap_s']:.2f} s); under {args.clients} page-refreshing clients "
          f"{under['tokens_per_s']:.1f} tokens/s (longest gap {under['max_gap_s']:.2f} s), "
          f"ratio {under['tokens_per_s'] / ph3['alone']['tokens_per_s']:.2f}; meanwhile {ph3['load_ok']} analyses "
          f"answered, {ph3['load_429']} refused 429, {ph3['load_other']} other")
    rss = result["rss_mb"]
    print(f"server RSS: {rss['start']:.0f} MB at the start, {rss['peak']:.0f} MB at the peak, {rss['end']:.0f} MB "
          "3 s after the load")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    ok = result["phase1"]["all_answered"] and ph2["other"] == 0 and ph2["streamed"] >= 1 and ph3["load_other"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
