"""Cross-attention at work: how well and how fast the default translator and fixed-query classifier train.

Trains `glassgpt seq2seq train`'s default translator (digits → English words, numbers 0..9999)
on CPU threads, then scores every held-out number (10% of 100..9999, never seen in training)
by exact match, greedy and with beam search; optionally (--classifier) the fixed-query
"is it sorted?" classifier too. With --plots it also draws the README's heatmaps in docs/.

    .venv/bin/python benchmarks/seq2seq.py                 # table + benchmarks/results/seq2seq-<task>-<threads>threads.json
    .venv/bin/python benchmarks/seq2seq.py --classifier --plots
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from glassgpt.io import write_json
from glassgpt.seq2seq import plots
from glassgpt.seq2seq.decode import beam_search, greedy
from glassgpt.seq2seq.task import Task, TaskConfig
from glassgpt.seq2seq.train import (TrainConfig, accuracy, classifier_config, exact_match, train_classifier,
                                    train_translator, translator_config)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"


def translation(task_name: str, beam_examples: int, draw: bool) -> dict:
    task = Task(TaskConfig(name=task_name))
    model_cfg, train_cfg = translator_config(task), TrainConfig(task=task_name)
    cpu0 = time.process_time()
    model, log = train_translator(task, model_cfg, train_cfg)
    cpu = time.process_time() - cpu0  # CPU time of all threads: less sensitive than wall time to other jobs
    t0 = time.perf_counter()
    greedy_em, wrong = exact_match(model, task, task.test_numbers)
    greedy_s = time.perf_counter() - t0
    tv = task.tgt_vocab
    beam_right = 0
    numbers = task.test_numbers[:beam_examples]
    for n in numbers:
        source, target = task.pair(n)
        best = beam_search(model, task.encode_sources([source]), tv.bos_id, tv.eos_id, beam=4)[0]
        beam_right += tv.decode(best.tokens) == target
    if draw:
        for source, name in (("1947", "seq2seq-alignment.png"), ("8015", "seq2seq-alignment-8015.png")):
            if task_name != "digits-to-words":
                break
            tokens, _ = greedy(model, task.encode_sources([source]), tv.bos_id, tv.eos_id)
            ids = tokens[0].tolist()
            ids = ids[: ids.index(tv.eos_id) + 1]
            plots.plot_alignment(plots.alignment(model, task, source, ids), DOCS / name)
    return {
        "task": task_name, "params": model.num_params(), "model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
        "train_seconds": round(log["train_seconds"], 1), "train_cpu_seconds": round(cpu, 1),
        "final_loss": round(sum(log["losses"][-20:]) / 20, 5),
        "held_out": len(task.test_numbers), "greedy_exact_match": greedy_em, "greedy_seconds": round(greedy_s, 2),
        "beam4_examples": len(numbers), "beam4_exact_match": beam_right / len(numbers),
        "wrong_examples": [list(w) for w in wrong[:10]],
    }


def classification(draw: bool) -> dict:
    task = Task(TaskConfig(name="sorted"))
    model_cfg, train_cfg = classifier_config(task), TrainConfig(task="sorted")
    cpu0 = time.process_time()
    model, log = train_classifier(task, model_cfg, train_cfg)
    cpu = time.process_time() - cpu0
    if draw:
        for text, name in (("112345789", "seq2seq-queries-sorted.png"), ("112354789", "seq2seq-queries-unsorted.png")):
            plots.plot_queries(plots.query_view(model, task, text), task.labels, DOCS / name)
    return {"task": "sorted", "params": model.num_params(), "model": model_cfg.to_dict(),
            "train": train_cfg.to_dict(), "train_seconds": round(log["train_seconds"], 1),
            "train_cpu_seconds": round(cpu, 1), "accuracy_fresh_2000": accuracy(model, task)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--task", default="digits-to-words", help="digits-to-words or words-to-digits")
    parser.add_argument("--beam-examples", type=int, default=200, help="held-out numbers scored with beam 4")
    parser.add_argument("--classifier", action="store_true", help="also train and score the sorted classifier")
    parser.add_argument("--plots", action="store_true", help="write the README's heatmaps to docs/")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                          "load_average_at_start": os.getloadavg()[0], "torch": torch.__version__}}
    result["translation"] = t = translation(args.task, args.beam_examples, args.plots)
    print(f"{'task':<18}{'params':>9}{'train s':>9}{'CPU s':>8}{'greedy EM':>11}{'beam-4 EM':>11}")
    print(f"{t['task']:<18}{t['params']:>9,}{t['train_seconds']:>9.1f}{t['train_cpu_seconds']:>8.1f}"
          f"{t['greedy_exact_match']:>10.2%}"
          f"{t['beam4_exact_match']:>10.2%}   ({t['held_out']} held-out numbers; beam on {t['beam4_examples']})")
    if args.classifier:
        result["classifier"] = c = classification(args.plots)
        print(f"{'sorted (queries)':<18}{c['params']:>9,}{c['train_seconds']:>9.1f}{c['train_cpu_seconds']:>8.1f}"
              f"{c['accuracy_fresh_2000']:>10.2%}"
              "   (accuracy on 2000 fresh examples; chance 50%)")
    result["machine"]["load_average_at_end"] = os.getloadavg()[0]
    path = write_json(RESULTS / f"seq2seq-{args.task}-{args.threads}threads.json", result)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
