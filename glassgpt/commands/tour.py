"""`glassgpt tour`: the seed's claims G1–G12 and T1–T16, one by one, with numbers and figures."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tour", help="walk through the seed's claims (G1–G12, T1–T16) on real models")
    p.add_argument("--out", default="tour-out", help="folder for the figures and tour.json (default: tour-out)")
    p.add_argument("--only", nargs="+", metavar="ID", help="just these stops, e.g. G9 T6 (or G9,T6)")
    p.add_argument("--model", help="the pretrained model (default: SmolLM2-135M-Instruct)")
    p.add_argument("--data", help="text for the model trained during the tour (default: Tiny Shakespeare)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long to train that model (default 60)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice; 1 is often "
                                                          "faster for the small model on a busy machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import GlassError
    from ..tour import Tour, run_tour, select_stops

    if args.seconds <= 0:
        raise GlassError(f"--seconds must be positive, got {args.seconds}")
    select_stops(args.only)  # unknown ids fail before anything loads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tour = Tour(out=Path(args.out), smol_spec=args.model, data=args.data, seconds=args.seconds)
    facts = run_tour(tour, args.only)
    print(f"\n{len(facts)} stops; numbers in {Path(args.out) / 'tour.json'}")
    return 0
