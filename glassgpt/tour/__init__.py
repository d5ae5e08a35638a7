"""`glassgpt tour`: the seed's claims G1–G12 and T1–T16, one stop each, shown on real models.

Each stop is a function `stop(tour) -> dict` that prints what it shows, next to the control
that would show it absent, and returns the numbers (the "facts"); the tests run the same stops
and check those numbers against their controls. Where pretrained knowledge matters a stop uses
SmolLM2 (`tour.smol()`); where training is the point it uses a small character model trained
for a fixed number of steps on Tiny Shakespeare (`tour.toy()`), recording Q/K as it trains,
and its twin trained on the same characters shuffled (`tour.toy(shuffled=True)`). Figures go
to the --out folder, all facts to tour.json.

    core.py       the Tour, the step budgets, the toy models
    gpt.py        G1–G12
    attention.py  T1–T8: what attention computes
    weights.py    T9–T16: attention's weights, and how they are learned
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..errors import GlassError
from ..io import write_json
from . import attention as _t
from . import gpt as _g
from . import weights as _w
from .core import FULL, QUICK, Budget, Toy, Tour, train_toy

__all__ = ["Budget", "FULL", "QUICK", "STOPS", "Tour", "Toy", "run_tour", "select_stops", "train_toy"]

STOPS: list[tuple[str, Callable[[Tour], dict]]] = (
    [(f"G{i}", getattr(_g, f"g{i}")) for i in range(1, 13)]
    + [(f"T{i}", getattr(_t, f"t{i}")) for i in range(1, 9)]
    + [(f"T{i}", getattr(_w, f"t{i}")) for i in range(9, 17)]
)


def select_stops(only: list[str] | None) -> list[tuple[str, Callable[[Tour], dict]]]:
    if not only:
        return STOPS
    known = {sid for sid, _ in STOPS}
    wanted = [s.strip().upper() for item in only for s in item.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise GlassError(f"unknown stop(s) {', '.join(unknown)}: the tour has G1–G12 and T1–T16")
    return [(sid, fn) for sid, fn in STOPS if sid in wanted]


def run_tour(tour: Tour, only: list[str] | None = None) -> dict:
    stops = select_stops(only)
    tour.out.mkdir(parents=True, exist_ok=True)
    for i, (sid, fn) in enumerate(stops, 1):
        claim = (fn.__doc__ or "").strip().splitlines()[0]
        tour.log(f"\n{sid}  {claim}  [{i}/{len(stops)}]")
        t0, c0 = time.perf_counter(), time.process_time()
        tour.warnings = []
        with torch.no_grad():  # stops that train turn gradients back on themselves
            facts = _jsonable(fn(tour))
        facts["seconds"] = round(time.perf_counter() - t0, 2)
        facts["cpu_seconds"] = round(time.process_time() - c0, 2)
        if tour.warnings:
            facts["warnings"] = list(tour.warnings)
        tour.facts[sid] = facts
        write_json(tour.out / "tour.json", tour.facts)
    return tour.facts


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x
