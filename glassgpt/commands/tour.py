"""`glassgpt tour`: the seed's claims G1–G12 and T1–T16, one by one, with numbers, figures and controls."""

from __future__ import annotations

import argparse

from .common import UsageError, command, positive, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "tour", "walk through the seed's claims (G1–G12, T1–T16) on real models, each beside its control",
                ["glassgpt tour", "glassgpt tour --only G9 T6 --quick --out tour-out"])
    p.add_argument("--out", default="tour-out", help="folder for the figures and tour.json (default: tour-out)")
    p.add_argument("--only", nargs="+", metavar="ID", help="just these stops, e.g. G9 T6 (or G9,T6)")
    p.add_argument("--model", metavar="MODEL", help="the pretrained model: a GGUF file or Hugging Face folder "
                                                    "(default: smollm2)")
    p.add_argument("--data", help="text for the models trained during the tour (default: tinyshakespeare)")
    p.add_argument("--quick", action="store_true", help="shorter trainings (the tests' budget)")
    p.add_argument("--steps", type=positive_int, metavar="N", help="training steps of the toy model (default 400; "
                                                                   "--quick 250)")
    p.add_argument("--max-minutes", type=positive, metavar="M", help="a safety net: trainings stop when the tour has "
                                                                     "run this long (their stops then warn that they "
                                                                     "are under-trained)")
    g = p.add_argument_group("where it runs")
    g.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch CPU threads for SmolLM2 (default 1; the small models always train on one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace
    from pathlib import Path

    from ..errors import GlassError
    from ..tour import FULL, QUICK, Tour, run_tour, select_stops

    try:
        select_stops(args.only)  # unknown ids fail before anything loads
    except GlassError as e:
        raise UsageError(str(e)) from None
    import torch

    torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else FULL
    if args.steps:
        budget = replace(budget, toy_steps=args.steps)
    tour = Tour(out=Path(args.out), smol_spec=args.model, data=args.data, budget=budget, max_minutes=args.max_minutes)
    t0, c0 = time.perf_counter(), time.process_time()
    facts = run_tour(tour, args.only)
    warned = [sid for sid, f in facts.items() if f.get("warnings")]
    print(f"\n{len(facts)} stops in {time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} s of CPU); "
          f"numbers in {Path(args.out) / 'tour.json'}")
    if warned:
        print(f"WARNING: {', '.join(warned)} could not show their effect in full (see above)")
    return 0
