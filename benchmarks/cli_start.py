"""How long the command line takes to answer: `glassgpt --help`, every `glassgpt CMD --help`, `import glassgpt`.

    .venv/bin/python benchmarks/cli_start.py [--repeat 3]

Each is a fresh process (what a user waits for); the table shows the best of --repeat runs, and the JSON
(benchmarks/results/cli_start.json) keeps every run with the machine's CPU count and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[list[str]]:
    sys.path.insert(0, str(ROOT))
    from glassgpt.cli import build_parser

    out = [[]]

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out.append([*path, name])
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    return out


def wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {"python -c 'import glassgpt'": [sys.executable, "-c", "import glassgpt"],
            "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"]}
    for words in commands():
        rows[" ".join(["glassgpt", *words, "--help"])] = [sys.executable, "-m", "glassgpt", *words, "--help"]
    results = {name: [wall(argv) for _ in range(args.repeat)] for name, argv in rows.items()}
    width = max(map(len, results))
    print(f"{'command':{width}}  best s  worst s")
    for name, times in results.items():
        print(f"{name:{width}}  {min(times):6.2f}  {max(times):7.2f}")
    out = ROOT / "benchmarks" / "results" / "cli_start.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                               "machine": platform.machine(), "seconds": results}, indent=1) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
