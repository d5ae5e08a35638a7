"""What the page shows, as plain JSON-ready dicts: tokens, the next-token logits, attention,
the logit lens and the embedding lab. A notebook can call these directly.

Each function takes a `Loaded` model and runs under no_grad; the caller holds the model's
lock. Large arrays travel as base64 (float32 little-endian, or uint8 for thumbnails) with
their shape beside them: `np.frombuffer(base64.b64decode(s), "<f4").reshape(shape)`.
"""

from __future__ import annotations

import base64

import numpy as np
import torch

from ..errors import ContextLengthError, GlassError
from ..inspect import embed
from ..inspect.common import W_U_of, check_head, check_layer
from ..load import Loaded
from . import tokens as tokview

LENS_CHUNK = 16  # positions whose lens logits (n_layers + 1, chunk, d_vocab) exist at once


def encode(loaded: Loaded, prompt: str) -> list[int]:
    """The prompt's token ids, checked against the context window (G11)."""
    if not prompt:
        raise GlassError("the prompt is empty")
    ids = loaded.tokenizer.encode(prompt)
    if not ids:
        raise GlassError("the prompt has no tokens")
    n_ctx = loaded.model.cfg.n_ctx
    if len(ids) > n_ctx:
        raise ContextLengthError(f"the prompt has {len(ids)} tokens; the context window holds {n_ctx}")
    return ids


def token_chips(loaded: Loaded, ids: list[int]) -> list[dict]:
    """One chip per token: its id, the piece as the vocabulary stores it ('Ġthe'), its text (' the'),
    its bytes, and for a piece holding part of a character the character it belongs to (web/tokens.py)."""
    return tokview.chips(loaded.tokenizer, ids)


def check_tokens(ids: list[int], most: int, route: str) -> None:
    """A heavy route's token cap (its memory grows with the prompt)."""
    if len(ids) > most:
        raise ContextLengthError(f"the prompt has {len(ids)} tokens; {route} takes at most {most}")


@torch.no_grad()
def cached(loaded: Loaded, ids: list[int], names: list[str]) -> dict[str, torch.Tensor]:
    """The named activations of one forward pass, computing the logits of the last position only
    (all T rows of logits would be T × d_vocab floats: 200 KB a token for SmolLM2)."""
    model = loaded.model
    was_training = model.training
    model.eval()
    try:
        _, cache = model.run_with_cache(torch.tensor([ids]), names=names, last_only=True)
    finally:
        model.train(was_training)
    return cache


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def sort_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High to low; tied logits keep the lowest id first, so the page's temperature 0 (all the mass on the
    first) is the sampler's (the lowest id among the largest logits)."""
    return torch.sort(logits, descending=True, stable=True)


@torch.no_grad()
def next_token(loaded: Loaded, ids: list[int], top_n: int) -> dict:
    """The raw logits at the last position (G12): the top_n tokens by name, and every logit sorted.

    The page recomputes softmax(logits / T) with top-k and top-p itself, so it needs the
    whole vocabulary's logits (the tail matters at high T), sorted high to low.
    """
    logits = loaded.model(torch.tensor([ids]), last_only=True)[0, -1].float()  # (d_vocab,)
    sorted_logits, order = sort_logits(logits)
    n = min(top_n, logits.shape[0])
    top = [dict(tokview.chip(loaded.tokenizer, i), logit=float(sorted_logits[j]))
           for j, i in enumerate(order[:n].tolist())]
    return {"top": top, "sorted_logits": b64(sorted_logits.numpy().astype("<f4")), "d_vocab": int(logits.shape[0])}


def attention_grid(loaded: Loaded, ids: list[int], max_cells: int) -> dict:
    """Every layer's and head's pattern, (L, H, T, T), as bytes 0..255 (p · 255): the thumbnails (T8)."""
    cfg = loaded.model.cfg
    T = len(ids)
    cells = cfg.n_layers * cfg.n_heads * T * T
    if cells > max_cells:
        most = int((max_cells / (cfg.n_layers * cfg.n_heads)) ** 0.5)
        raise ContextLengthError(f"the attention grid of {T} tokens is too large ({cells:,} cells); "
                                 f"use a prompt of at most {most} tokens")
    names = [f"blocks.{i}.attn.pattern" for i in range(cfg.n_layers)]
    pattern = torch.stack([p[0] for p in cached(loaded, ids, names).values()]).float()  # (L, H, T, T)
    quantised = (pattern * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return {"shape": list(quantised.shape), "pattern_u8": b64(quantised)}


def head_pattern(loaded: Loaded, ids: list[int], layer: int, head: int) -> dict:
    """One head's full pattern (T, T) as nested lists of floats: row i is query i over the keys."""
    check_layer(loaded.model, layer)
    check_head(loaded.model, head)
    pattern = cached(loaded, ids, [f"blocks.{layer}.attn.pattern"])[f"blocks.{layer}.attn.pattern"][0, head]
    pattern = pattern.float()  # (T, T)
    return {"layer": layer, "head": head, "pattern": [[round(p, 5) for p in row] for row in pattern.tolist()]}


@torch.no_grad()
def lens(loaded: Loaded, ids: list[int], k: int) -> dict:
    """The logit lens (G6): at each stage and position, the k best guesses with probabilities."""
    return lens_top(loaded, lens_stages(loaded, ids), k)


def lens_stages(loaded: Loaded, ids: list[int]) -> torch.Tensor:
    """The lens's forward pass: the residual stream after each stage, (L+1, T, d_model)."""
    L = loaded.model.cfg.n_layers
    stages = ["embed"] + [f"blocks.{i}.resid_post" for i in range(L)]
    cache = cached(loaded, ids, stages)
    return torch.stack([cache.pop(n)[0] for n in stages])


@torch.no_grad()
def lens_top(loaded: Loaded, resid: torch.Tensor, k: int) -> dict:
    """The lens's read-out: final norm and unembedding at every stage and position, top k kept.

    The lens logits of every stage and position would be (n_layers + 1) × T × d_vocab floats
    (4.7 GB for SmolLM2 at 800 tokens), so they are computed LENS_CHUNK positions at a time
    and only each chunk's top k is kept. It runs no hook, so it needs no model lock."""
    model, tok = loaded.model, loaded.tokenizer
    names = ["embed"] + [f"blocks.{i}" for i in range(model.cfg.n_layers)]
    W_U = W_U_of(model)
    k = max(1, min(k, W_U.shape[-1]))
    top_ids, top_probs = [], []
    for start in range(0, resid.shape[1], LENS_CHUNK):
        chunk = model.unembed.norm(resid[:, start:start + LENS_CHUNK]) @ W_U.to(resid.dtype)  # (L+1, c, d_vocab)
        probs, idx = torch.softmax(chunk.float(), dim=-1).topk(k, dim=-1)  # (L+1, c, k)
        top_ids.append(idx)
        top_probs.append(probs)
        del chunk
    top_ids, top_probs = torch.cat(top_ids, dim=1).tolist(), torch.cat(top_probs, dim=1).tolist()
    chips = {i: tokview.chip(tok, i) for i in {i for layer in top_ids for row in layer for i in row}}
    layers = []
    for name, ids_l, probs_l in zip(names, top_ids, top_probs):
        layers.append({"name": name, "positions": [
            [dict(chips[i], prob=round(p, 5)) for i, p in zip(row_ids, row_probs)]
            for row_ids, row_probs in zip(ids_l, probs_l)
        ]})
    return {"layers": layers}


@torch.no_grad()
def embed_lab(loaded: Loaded, op: str, words: list[str], pairs: list[list[str]], k: int, space: str) -> dict:
    """G9: nearest neighbours of a word, a − b + c, or words projected on a direction; with how each
    word splits into tokens (several: their vectors are averaged) and whether W_U is W_Eᵀ (tied)."""
    out = _embed_op(loaded, op, words, pairs, k, space)
    tok = loaded.tokenizer
    seen = list(dict.fromkeys(words + [w for p in pairs for w in p]))
    out["words"] = [{"word": w, "pieces": tokview.chips(tok, embed.word_ids(tok, w)),
                     "leading_space": getattr(tok, "kind", "") == "bpe" and not w.startswith(" ")} for w in seen]
    out["tied"] = loaded.model.unembed.W_U is None
    out["space"] = space
    return out


def _embed_op(loaded: Loaded, op: str, words: list[str], pairs: list[list[str]], k: int, space: str) -> dict:
    model, tok = loaded.model, loaded.tokenizer
    if op == "nearest":
        if len(words) != 1:
            raise GlassError("nearest takes one word")
        return {"op": op, "results": _pairs(embed.nearest(model, tok, words[0], k, space))}
    if op == "analogy":
        if len(words) != 3:
            raise GlassError("analogy takes three words: a − b + c")
        return {"op": op, "results": _pairs(embed.analogy(model, tok, *words, k=k, space=space))}
    if op == "project":
        if not words:
            raise GlassError("project takes at least one word to place on the direction")
        d = embed.direction(model, tok, [tuple(p) for p in pairs], space)
        return {"op": op, "results": _pairs(embed.project(model, tok, words, d, space))}
    raise GlassError(f"unknown embedding operation {op!r}; choose nearest, analogy or project")


def _pairs(rows: list[tuple[str, float]]) -> list[dict]:
    return [{"text": text, "score": round(score, 5)} for text, score in rows]
