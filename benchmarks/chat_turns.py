"""Time to the first token of each turn of a scripted chat, with and without the KV cache kept between turns.

    .venv/bin/python benchmarks/chat_turns.py                 # default weights, 1 thread
    .venv/bin/python benchmarks/chat_turns.py --weights fp32 --threads 2

Eight user messages, greedy answers of up to 48 tokens, SmolLM2-135M-Instruct. Two sessions run
turn by turn side by side: one keeps its KV cache (chat's default), one recomputes the whole
conversation every turn (reuse_cache=False). Both must give the same answers. Peak RSS is checked
against 1.5 × the weights' bytes + a bare `import torch`'s RSS (both measured in this run): the peak of
a chat — the kept session alone, in a process of its own, as `glassgpt chat` runs it — and, beside it,
this process's peak, which also holds the recomputing control session and its prefills of the whole
conversation. (benchmarks/memory.py says where the bytes go.) Writes
benchmarks/results/chat_turns-<weights>-<threads>threads.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from glassgpt.chat import Chat
from glassgpt.generate import SampleConfig
from glassgpt.load import load_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))  # generate.py beside this file
TURNS = [
    "Hi! Can you help me plan a small vegetable garden?",
    "Which vegetables are easiest for a beginner?",
    "How often should I water tomatoes?",
    "What about lettuce?",
    "Should I use compost?",
    "How do I keep snails away?",
    "When should I harvest the carrots?",
    "Thanks! Can you summarise the plan in three steps?",
]


def first_token_time(chat: Chat, text: str) -> tuple[float, str]:
    t = time.perf_counter()
    pieces = chat.ask(text)
    first = next(pieces, "")
    ttft = time.perf_counter() - t
    return ttft, first + "".join(pieces)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None, help="a glassgpt.fast mode (default: chat's default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kept-only", action="store_true", help=argparse.SUPPRESS)  # the chat alone: its peak RSS
    args = ap.parse_args()
    from glassgpt.fast import DEFAULT_MODE

    weights = args.weights or DEFAULT_MODE
    torch.set_num_threads(args.threads)
    loaded = load_model(None, weights=weights)
    sample = SampleConfig(max_new_tokens=48, temperature=0)
    if args.kept_only:
        from generate import peak_rss_mb

        chat = Chat(loaded, sample=sample)
        with torch.inference_mode():
            answers = [chat.reply(text).strip() for text in TURNS]
        print(json.dumps({"peak_rss_mb": peak_rss_mb(), "answers": answers}))
        return
    kept, fresh = Chat(loaded, sample=sample), Chat(loaded, sample=sample, reuse_cache=False)
    rows = []
    with torch.inference_mode():
        for n, text in enumerate(TURNS, 1):
            prompt_tokens = len(loaded.tokenizer.encode(Chat(loaded, messages=kept.messages + [
                {"role": "user", "content": text}]).prompt_text()))
            t_kept, a = first_token_time(kept, text)
            t_fresh, b = first_token_time(fresh, text)
            rows.append({"turn": n, "prompt_tokens": prompt_tokens, "ttft_ms_kept": round(t_kept * 1000, 1),
                         "ttft_ms_recomputed": round(t_fresh * 1000, 1), "same_answer": a == b})
            print(rows[-1], flush=True)
    from generate import bare_torch_rss, peak_rss_mb

    from glassgpt.fast import weights_bytes

    peak, weights_mb = peak_rss_mb(), round(weights_bytes(loaded.model) / 1e6, 1)
    bare = bare_torch_rss()  # MB, as everything here
    cache = kept._cache  # reserved ahead (chat.RESERVE); a page is resident once a token is written to it
    kv_held_mb = round(cache.nbytes * cache.length / cache.capacity / 1e6, 1)
    alone = json.loads(subprocess.run([sys.executable, __file__, "--kept-only", "--weights", weights, "--threads",
                                       str(args.threads)], capture_output=True, text=True, check=True).stdout)
    bound = round(1.5 * weights_mb + bare, 1)
    result = {"weights": weights, "threads": args.threads, "turns": rows, "chat_peak_rss_mb": alone["peak_rss_mb"],
              "chat_within_bound": alone["peak_rss_mb"] <= bound,
              "chat_alone_same_answers": alone["answers"] == [m["content"] for m in kept.messages[1::2]],
              "peak_rss_with_recomputing_control_mb": peak, "weights_mb": weights_mb, "bare_torch_rss_mb": bare,
              "kv_cache_held_mb": kv_held_mb, "kv_cache_reserved_mb": round(cache.nbytes / 1e6, 1),
              "rss_bound_mb": bound,
              "turn8_over_turn1_kept": round(rows[-1]["ttft_ms_kept"] / rows[0]["ttft_ms_kept"], 2),
              "turn8_over_turn1_recomputed": round(rows[-1]["ttft_ms_recomputed"] / rows[0]["ttft_ms_recomputed"], 2)}
    print(json.dumps({k: v for k, v in result.items() if k != "turns"}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"chat_turns-{weights}-{args.threads}threads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
