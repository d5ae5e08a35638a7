"""`glassgpt inspect attention|lens|embed|heads`: look inside a model, in the terminal and as PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import UsageError, add_model_args, command, load


def register(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "inspect", "attention patterns, logit lens, embedding directions, head statistics",
                ['glassgpt inspect lens "The capital of France is Paris. The capital of Italy is"',
                 "glassgpt inspect embed --analogy king man woman"])
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        add_model_args(q, device=False)
        q.add_argument("--out", default="inspect-out", help="folder for the PNGs (default: inspect-out)")

    a = command(what, "attention", "each head's attention pattern, as a heatmap with token labels",
                ['glassgpt inspect attention "Mr and Mrs Dursley, of number four" --layer 3 --head 2 --scores'])
    a.add_argument("text")
    a.add_argument("--layer", type=int, default=0, help="the layer to show (default 0)")
    a.add_argument("--head", type=int, help="one head, drawn large (default: a grid of all heads)")
    a.add_argument("--top", type=int, default=2, help="the most attended tokens listed per query (default 2)")
    a.add_argument("--scores", action="store_true", help="also the raw scores Q·Kᵀ/√d_k before mask and softmax (T8)")
    common(a)
    a.set_defaults(func=run_attention)

    lens = command(what, "lens", "the logit lens: each layer's best guess at each position",
                   ['glassgpt inspect lens "The capital of France is Paris. The capital of Italy is" --out lens-out'])
    lens.add_argument("text")
    lens.add_argument("--k", type=int, default=3, help="guesses per cell in the --position listing (default 3)")
    lens.add_argument("--position", type=int, default=-1, help="position listed in full (default: the last)")
    common(lens)
    lens.set_defaults(func=run_lens)

    e = command(what, "embed", "nearest words, analogies, directions and their alignment (G9)",
                ["glassgpt inspect embed --analogy king man woman",
                 "glassgpt inspect embed --along man:woman king:queen --project actor actress"])
    e.add_argument("--nearest", nargs="+", metavar="WORD", help="the tokens closest to each word (cosine)")
    e.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"), help="A − B + C, e.g. king man woman")
    e.add_argument("--along", nargs="+", metavar="FROM:TO", help="a direction: the mean of TO − FROM over the "
                                                                 "pairs, e.g. man:woman or cat:cats dog:dogs")
    e.add_argument("--project", nargs="+", metavar="WORD", help="with --along: each word's coordinate on it")
    e.add_argument("--align", nargs="+", metavar="FROM:TO", help="how well these pairs' differences align, "
                                                                 "against random pairs")
    e.add_argument("--space", choices=["embed", "unembed"], default="embed",
                   help="W_E's rows (what the model reads) or W_U's columns (what it writes)")
    e.add_argument("--k", type=int, default=10)
    common(e)
    e.set_defaults(func=run_embed)

    h = command(what, "heads", "per head: attention distance, entropy, previous/first-token and induction scores",
                ["glassgpt inspect heads --layer 4", 'glassgpt inspect heads "In the beginning God created"'])
    h.add_argument("text", nargs="?", help="text for distance, entropy, previous/first-token scores "
                                           "(default: the repeated random sequence)")
    h.add_argument("--layer", type=int, help="print and draw only this layer")
    common(h)
    h.set_defaults(func=run_heads)


# ----------------------------------------------------------------------------- helpers


def _load(args):
    return load(args)


def _at_least_one(args, name: str) -> None:
    from ..errors import GlassError

    if getattr(args, name) < 1:
        raise GlassError(f"--{name} must be at least 1, got {getattr(args, name)}")


def _encode(loaded, text: str):
    import torch

    from ..errors import GlassError, check_tokens

    ids = loaded.tokenizer.encode(text)
    if not ids:
        raise GlassError("the text has no tokens")
    tokens = torch.tensor(ids, dtype=torch.long)
    check_tokens(tokens, loaded.model.cfg.d_vocab, loaded.model.cfg.n_ctx)  # the context window, said clearly (G11)
    return tokens


def _out(args) -> Path:
    path = Path(args.out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cell(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


# ----------------------------------------------------------------------------- attention


def run_attention(args) -> int:
    from ..inspect.attention import attention_patterns, attention_scores, top_attended
    from ..inspect.common import check_head, check_layer, token_labels
    from ..inspect.plots import attention_grid, attention_heatmap, save

    _at_least_one(args, "top")
    loaded = _load(args)
    model, tok = loaded.model, loaded.tokenizer
    check_layer(model, args.layer)
    if args.head is not None:
        check_head(model, args.head)
    tokens = _encode(loaded, args.text)
    labels = token_labels(tok, tokens.tolist())
    top = top_attended(model, tokens, args.layer, args.head, k=args.top)
    print(f"{len(labels)} tokens: {' '.join(labels)}")
    for h, rows in top.items():
        print(f"\nlayer {args.layer} head {h}: query → most attended keys")
        for i, row in enumerate(rows):
            looks = ", ".join(f"{labels[j]}@{j} {w:.2f}" for j, w in row)
            print(f"  {i:3d} {_cell(labels[i], 14):>14} → {looks}")
    out = _out(args)
    pattern = attention_patterns(model, tokens, args.layer)[0]  # (H, T, T)
    if args.head is None:
        path = save(attention_grid(pattern, labels, f"layer {args.layer}: attention of each head"),
                    out / f"attention_L{args.layer}.png")
    else:
        path = save(attention_heatmap(pattern[args.head], labels, f"layer {args.layer} head {args.head}"),
                    out / f"attention_L{args.layer}_H{args.head}.png")
    print(f"\nwrote {path}")
    if args.scores:
        scores = attention_scores(model, tokens, args.layer)[0]
        heads = range(model.cfg.n_heads) if args.head is None else [args.head]
        for h in heads:
            path = save(attention_heatmap(scores[h], labels, f"layer {args.layer} head {h}: scores before the "
                                          "mask and softmax", scores=True), out / f"scores_L{args.layer}_H{h}.png")
            print(f"wrote {path}")
        if args.head is not None and len(labels) <= 12:
            print(f"\nscores Q·Kᵀ/√d_k, layer {args.layer} head {args.head} (rows: queries; the future is masked "
                  "to −∞ before the softmax):")
            for i, row in enumerate(scores[args.head].tolist()):
                print(f"  {_cell(labels[i], 10):>10} " + " ".join(f"{x:7.2f}" for x in row))
    return 0


# ----------------------------------------------------------------------------- lens


def run_lens(args) -> int:
    from ..errors import GlassError
    from ..inspect.common import token_labels
    from ..inspect.lens import logit_lens
    from ..inspect.plots import lens_figure, save

    _at_least_one(args, "k")
    loaded = _load(args)
    if args.k > loaded.model.cfg.d_vocab:
        raise GlassError(f"--k must be at most the vocabulary size ({loaded.model.cfg.d_vocab}), got {args.k}")
    tok = loaded.tokenizer
    tokens = _encode(loaded, args.text)
    T = len(tokens)
    if not -T <= args.position < T:
        raise GlassError(f"position {args.position} is out of range: the text has positions 0..{T - 1}")
    lens = logit_lens(loaded.model, tokens, k=args.k)
    labels = token_labels(tok, tokens.tolist())
    width = 9
    print("top guess for the next token, at each stage (rows) and input position (columns)")
    print(f"{'':>10} " + " ".join(f"{_cell(s, width):>{width}}" for s in labels))
    for s, name in enumerate(lens.layer_names):
        guesses = token_labels(tok, lens.top_ids[s, :, 0].tolist())
        print(f"{name:>10} " + " ".join(f"{_cell(g, width):>{width}}" for g in guesses))
    pos = args.position % T
    print(f"\nat position {pos} ({labels[pos]}), the top {lens.top_ids.shape[-1]} at each stage:")
    for s, name in enumerate(lens.layer_names):
        cells = ", ".join(f"{g} {p:.2f}" for g, p in zip(token_labels(tok, lens.top_ids[s, pos].tolist()),
                                                        lens.top_probs[s, pos].tolist()))
        print(f"  {name:>10}: {cells}")
    path = save(lens_figure(lens, tok, labels, f"logit lens: {args.text[:60]}"), _out(args) / "lens.png")
    print(f"\nwrote {path}")
    return 0


# ----------------------------------------------------------------------------- embed


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    from ..errors import GlassError

    pairs = []
    for item in items:
        parts = item.split(":")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise GlassError(f"a pair is written FROM:TO, e.g. man:woman; got {item!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def _note_splits(tok, words) -> None:
    from ..inspect.embed import word_ids

    for w in dict.fromkeys(words):
        ids = word_ids(tok, w)
        if len(ids) > 1:
            pieces = " ".join(repr(tok.decode([i])) for i in ids)
            print(f"note: {w!r} is {len(ids)} tokens ({pieces}); its vector is their mean")


def run_embed(args) -> int:
    from ..errors import GlassError
    from ..inspect import embed
    from ..inspect.plots import alignment_figure, projection_figure, save

    if not (args.nearest or args.analogy or args.align or args.along):
        raise UsageError("say what to show: --nearest WORD, --analogy A B C, --along FROM:TO --project WORD…, "
                         "or --align FROM:TO FROM:TO…")
    if args.project and not args.along:
        raise GlassError("--project needs a direction: --along FROM:TO [FROM:TO …]")
    _at_least_one(args, "k")
    loaded = _load(args)
    model, tok, sp = loaded.model, loaded.tokenizer, args.space
    words = list(args.nearest or []) + list(args.analogy or []) + list(args.project or [])
    for pairs in (args.along, args.align):
        words += [w for p in _pairs(pairs or []) for w in p]
    _note_splits(tok, words)
    out = None
    for w in args.nearest or []:
        print(f"\nnearest to {w!r} ({sp}):")
        for t, c in embed.nearest(model, tok, w, args.k, sp):
            print(f"  {c:6.3f}  {t!r}")
    if args.analogy:
        a, b, c = args.analogy
        print(f"\n{a} − {b} + {c} ≈ ({sp}, unit vectors, inputs left out):")
        for t, s in embed.analogy(model, tok, a, b, c, args.k, sp):
            print(f"  {s:6.3f}  {t!r}")
    if args.along:
        pairs = _pairs(args.along)
        d = embed.direction(model, tok, pairs, sp)
        name = ", ".join(f"{b} − {a}" for a, b in pairs)
        name = f"mean of ({name})" if len(pairs) > 1 else name
        print(f"\ndirection {name}: |d| = {float(d.norm()):.3f}")
        if args.project:
            values = embed.project(model, tok, args.project, d, sp)
            for w, v in sorted(values, key=lambda x: x[1]):
                print(f"  {v:7.3f}  {w}")
            out = out or _out(args)
            print(f"wrote {save(projection_figure(values, 'along ' + name), out / 'projection.png')}")
        print("tokens furthest along it:")
        for t, c in embed.nearest(model, tok, d, args.k, sp):
            print(f"  {c:6.3f}  {t!r}")
    if args.align:
        pairs = _pairs(args.align)
        r = embed.pair_alignment(model, tok, pairs, sp)
        print(f"\nalignment of {len(pairs)} pairs' differences ({sp}):")
        print(f"  mean cosine between pairs     {r['mean_cosine']:.3f}")
        print(f"  random pairs (n={r['n_random']})      {r['baseline_mean']:.3f} ± {r['baseline_std']:.3f}")
        print(f"  z = {r['z']:.1f} baseline standard deviations"
              + ("  → a shared direction" if r["z"] > 3 else "  → not distinguishable from chance"))
        out = out or _out(args)
        title = "pairs " + ", ".join(f"{a}→{b}" for a, b in pairs[:4]) + ("…" if len(pairs) > 4 else "")
        print(f"wrote {save(alignment_figure(r, title=title), out / 'alignment.png')}")
    return 0


# ----------------------------------------------------------------------------- heads


def run_heads(args) -> int:
    from ..inspect.common import check_layer
    from ..inspect.heads import head_scores
    from ..inspect.plots import distance_by_layer_figure, head_scores_figure, layer_heads_figure, save

    loaded = _load(args)
    model, tok = loaded.model, loaded.tokenizer
    if args.layer is not None:
        check_layer(model, args.layer)
    tokens = _encode(loaded, args.text) if args.text else None
    s = head_scores(model, tokens, bos=tok.bos_id)
    layers = range(model.cfg.n_layers) if args.layer is None else [args.layer]
    on = f"{s.n_tokens} tokens of the text" if tokens is not None else f"a repeated random sequence ({s.n_tokens} tokens)"
    print(f"scores on {on}; induction on a repeated random sequence")
    print(f"{'layer':>5} {'head':>4} {'distance':>9} {'entropy':>8} {'prev':>6} {'first':>6} {'induct':>7}")
    for layer in layers:
        for h in range(model.cfg.n_heads):
            print(f"{layer:5d} {h:4d} {float(s.distance[layer, h]):9.2f} {float(s.entropy[layer, h]):8.2f} "
                  f"{float(s.prev_token[layer, h]):6.2f} {float(s.first_token[layer, h]):6.2f} "
                  f"{float(s.induction[layer, h]):7.2f}")
    d = s.by_layer
    print(f"\nG4, mean over heads by layer, with its controls (uniform attention over the same {s.n_tokens} tokens "
          f"would give {d.uniform:.1f}, or {d.uniform_without_first:.1f} with token 0 left out):")
    print("  distance:                   " + " ".join(f"{x:5.1f}" for x in d.distance))
    print("  share on token 0:           " + " ".join(f"{x:5.2f}" for x in d.first_share))
    print("  distance, token 0 left out: " + " ".join(f"{x:5.1f}" for x in d.without_first))
    (raw_e, raw_l), (rest_e, rest_l) = d.early_late(d.distance), d.early_late(d.without_first)
    print(f"  first third vs last third: distance {raw_e:.1f} → {raw_l:.1f}; token 0 left out {rest_e:.1f} → {rest_l:.1f}")
    print("  → " + d.verdict())
    out = _out(args)
    print(f"wrote {save(head_scores_figure(s, 'head scores'), out / 'heads.png')}")
    print(f"wrote {save(distance_by_layer_figure(s.distance, 'attention distance by layer'), out / 'heads_distance.png')}")
    for layer in layers:
        save(layer_heads_figure(s, layer), out / f"heads_L{layer}.png")
    print(f"wrote {len(layers)} per-layer figure(s) heads_L*.png to {out}")
    return 0
