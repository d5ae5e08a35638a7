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
from ..inspect.attention import attention_patterns
from ..inspect.lens import logit_lens
from ..load import Loaded


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
    """One chip per token: its id, the piece as the vocabulary stores it ('Ġthe'), and its text (' the')."""
    tok = loaded.tokenizer
    return [{"id": i, "piece": tok.id_to_piece(i), "text": tok.decode([i])} for i in ids]


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


@torch.no_grad()
def next_token(loaded: Loaded, ids: list[int], top_n: int) -> dict:
    """The raw logits at the last position (G12): the top_n tokens by name, and every logit sorted.

    The page recomputes softmax(logits / T) with top-k and top-p itself, so it needs the
    whole vocabulary's logits (the tail matters at high T), sorted high to low.
    """
    logits = loaded.model(torch.tensor([ids]))[0, -1].float()  # (d_vocab,)
    sorted_logits, order = torch.sort(logits, descending=True)
    n = min(top_n, logits.shape[0])
    top = [dict(chip, logit=float(sorted_logits[j]))
           for j, chip in enumerate(token_chips(loaded, order[:n].tolist()))]
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
    pattern = attention_patterns(loaded.model, ids).float()  # (L, H, T, T)
    quantised = (pattern * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return {"shape": list(quantised.shape), "pattern_u8": b64(quantised)}


def head_pattern(loaded: Loaded, ids: list[int], layer: int, head: int) -> dict:
    """One head's full pattern (T, T) as nested lists of floats: row i is query i over the keys."""
    cfg = loaded.model.cfg
    if not 0 <= layer < cfg.n_layers:
        raise GlassError(f"layer {layer} is out of range: this model has layers 0..{cfg.n_layers - 1}")
    if not 0 <= head < cfg.n_heads:
        raise GlassError(f"head {head} is out of range: this model has heads 0..{cfg.n_heads - 1}")
    pattern = attention_patterns(loaded.model, ids, layer=layer)[0, head].float()  # (T, T)
    return {"layer": layer, "head": head, "pattern": [[round(p, 5) for p in row] for row in pattern.tolist()]}


def lens(loaded: Loaded, ids: list[int], k: int) -> dict:
    """The logit lens (G6): at each stage and position, the k best guesses with probabilities."""
    result = logit_lens(loaded.model, ids, k)
    tok = loaded.tokenizer
    layers = []
    for name, ids_l, probs_l in zip(result.layer_names, result.top_ids.tolist(), result.top_probs.tolist()):
        layers.append({"name": name, "positions": [
            [{"id": i, "text": tok.decode([i]), "prob": round(p, 5)} for i, p in zip(row_ids, row_probs)]
            for row_ids, row_probs in zip(ids_l, probs_l)
        ]})
    return {"layers": layers}


@torch.no_grad()
def embed_lab(loaded: Loaded, op: str, words: list[str], pairs: list[list[str]], k: int, space: str) -> dict:
    """G9: nearest neighbours of a word, a − b + c, or words projected on a direction."""
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
