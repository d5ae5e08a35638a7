"""Embeddings as directions (G9): nearest neighbours, analogies, directions and projections.

Every word becomes a vector from the model's own matrices: a row of W_E (space="embed",
what the model reads) or a column of W_U (space="unembed", what it writes). Byte-level BPE
vocabularies store a word in mid-sentence with its leading space (" king", piece "Ġking"),
so a word without one is looked up that way. A word that splits into several tokens is
the mean of its tokens' vectors; its pieces are returned so the caller can say so.
Similarity is the cosine: the dot product of the two unit vectors (G9's "relatedness").
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ..errors import GlassError
from ..model import GPT

SPACES = ("embed", "unembed")


def vocab_matrix(model: GPT, space: str = "embed") -> torch.Tensor:
    """(d_vocab, d_model): one vector per token — W_E's rows, or W_U's columns."""
    if space not in SPACES:
        raise GlassError(f"space must be one of {SPACES}, got {space!r}")
    W_U = model.W_U  # (d_model, d_vocab)
    W = model.embed.W_E if space == "embed" else W_U.T
    return W.detach().float()


def word_ids(tokenizer, word: str) -> list[int]:
    """The token ids of a word as it appears inside a sentence."""
    if not isinstance(word, str) or not word.strip():
        raise GlassError(f"not a word: {word!r}")
    text = word
    if getattr(tokenizer, "kind", "") == "bpe" and not word.startswith(" "):
        text = " " + word  # byte-level BPE: mid-sentence words carry their space
    try:
        ids = tokenizer.encode(text)
    except GlassError as e:
        raise GlassError(f"the word {word!r} cannot be encoded by this tokenizer: {e}") from None
    ids = [i for i in ids if i < tokenizer.vocab_size]
    if not ids:
        raise GlassError(f"the word {word!r} is absent from the vocabulary")
    return ids


def word_vector(model: GPT, tokenizer, word: str, space: str = "embed") -> tuple[torch.Tensor, list[str]]:
    """(the word's vector (d_model,), its pieces). Several pieces: the mean of their vectors."""
    ids = word_ids(tokenizer, word)
    if max(ids) >= model.cfg.d_vocab:
        raise GlassError(f"the word {word!r} has token ids beyond the model's vocabulary of {model.cfg.d_vocab}")
    W = vocab_matrix(model, space)
    return W[ids].mean(dim=0), [tokenizer.decode([i]) for i in ids]


def _label(tokenizer, i: int) -> str:
    return tokenizer.decode([int(i)])


def _rank(model: GPT, tokenizer, query: torch.Tensor, k: int, space: str, exclude: set[int]) -> list[tuple[str, float]]:
    W = vocab_matrix(model, space)
    cos = F.cosine_similarity(W, query.float().unsqueeze(0), dim=-1)  # (d_vocab,)
    if exclude:
        cos[list(exclude)] = -float("inf")
    n = max(0, min(k, W.shape[0] - len(exclude)))
    values, ids = cos.topk(n)
    return [(_label(tokenizer, i), float(v)) for i, v in zip(ids, values)]


def nearest(model: GPT, tokenizer, query: "str | torch.Tensor", k: int = 10, space: str = "embed") -> list[tuple[str, float]]:
    """The k tokens whose vectors have the highest cosine with the query (a word's own tokens left out)."""
    if isinstance(query, str):
        vec, _ = word_vector(model, tokenizer, query, space)
        return _rank(model, tokenizer, vec, k, space, set(word_ids(tokenizer, query)))
    if query.shape != (model.cfg.d_model,):
        raise GlassError(f"a query vector must have shape ({model.cfg.d_model},), got {tuple(query.shape)}")
    return _rank(model, tokenizer, query, k, space, set())


def analogy(model: GPT, tokenizer, a: str, b: str, c: str, k: int = 10, space: str = "embed") -> list[tuple[str, float]]:
    """a − b + c on unit vectors (king − man + woman ≈ queen), the three inputs left out."""
    va, vb, vc = (F.normalize(word_vector(model, tokenizer, w, space)[0], dim=0) for w in (a, b, c))
    exclude = set(word_ids(tokenizer, a)) | set(word_ids(tokenizer, b)) | set(word_ids(tokenizer, c))
    return _rank(model, tokenizer, va - vb + vc, k, space, exclude)


def _differences(model: GPT, tokenizer, pairs: list[tuple[str, str]], space: str) -> torch.Tensor:
    if not pairs:
        raise GlassError("give at least one pair of words, e.g. man,woman")
    rows = []
    for pair in pairs:
        if len(pair) != 2:
            raise GlassError(f"a pair has two words, got {pair!r}")
        first, second = pair
        rows.append(word_vector(model, tokenizer, second, space)[0] - word_vector(model, tokenizer, first, space)[0])
    return torch.stack(rows)  # (n_pairs, d_model)


def direction(model: GPT, tokenizer, pairs: list[tuple[str, str]], space: str = "embed") -> torch.Tensor:
    """The mean of (second − first) over the pairs: [("man", "woman")] or [("cat", "cats"), ("dog", "dogs")]."""
    return _differences(model, tokenizer, pairs, space).mean(dim=0)


def project(model: GPT, tokenizer, words: list[str], direction: torch.Tensor, space: str = "embed") -> list[tuple[str, float]]:
    """Each word's coordinate along the direction: v · d / |d|, in the order given."""
    unit = F.normalize(direction.float(), dim=0)
    return [(w, float(word_vector(model, tokenizer, w, space)[0] @ unit)) for w in words]


def word_like_ids(tokenizer, limit: int | None = None) -> list[int]:
    """Tokens that decode to a plain word of 3+ letters (with or without its leading space)."""
    word = re.compile(r"^ ?[A-Za-z]{3,}$")
    n = tokenizer.vocab_size if limit is None else min(limit, tokenizer.vocab_size)
    return [i for i in range(n) if word.match(tokenizer.decode([i]))]


def pair_alignment(
    model: GPT, tokenizer, pairs: list[tuple[str, str]], space: str = "embed", n_random: int = 2000, seed: int = 0
) -> dict:
    """Do the pairs share one direction? Mean cosine between their differences, against chance.

    The baseline draws random pairs of word-like tokens and measures the same statistic —
    the cosine between two pairs' differences — n_random times. A real direction (plural,
    female) sits many baseline standard deviations above the baseline mean.
    """
    if len(pairs) < 2:
        raise GlassError("alignment needs at least two pairs, e.g. cat,cats dog,dogs")
    diffs = F.normalize(_differences(model, tokenizer, pairs, space), dim=-1)  # (n, d_model)
    cos = diffs @ diffs.T  # (n, n)
    n = len(pairs)
    off = cos[~torch.eye(n, dtype=torch.bool)]
    W = vocab_matrix(model, space)
    pool = word_like_ids(tokenizer)
    if len(pool) < 50:
        pool = list(range(min(tokenizer.vocab_size, W.shape[0])))
    pool_t = torch.tensor(pool)
    g = torch.Generator().manual_seed(seed)
    pick = pool_t[torch.randint(len(pool), (n_random, 4), generator=g)]  # (n_random, 4): two random pairs
    d1 = F.normalize(W[pick[:, 1]] - W[pick[:, 0]], dim=-1)
    d2 = F.normalize(W[pick[:, 3]] - W[pick[:, 2]], dim=-1)
    base = (d1 * d2).sum(-1).nan_to_num(0.0)  # (n_random,)
    return {
        "pairs": [list(p) for p in pairs],
        "cosines": cos.tolist(),
        "mean_cosine": float(off.mean()),
        "baseline_mean": float(base.mean()),
        "baseline_std": float(base.std()),
        "n_random": n_random,
        "z": float((off.mean() - base.mean()) / base.std().clamp_min(1e-12)),
    }


def pair_report(
    model: GPT, tokenizer, pairs: list[tuple[str, str]], space: str = "embed", n_random: int = 2000, seed: int = 0
) -> dict:
    """Each pair on its own, against two controls (G9).

    For pair i, its difference (second − first) is compared by cosine with the direction of the
    *other* pairs (their mean unit difference), so no pair is measured against itself:

    - matched:     cos(second_i − first_i, direction without i), one value per pair;
    - mismatched:  cos(second_j − first_i, direction without i and j) for every i ≠ j (cat → dogs,
                   man → queen): the same words, wrongly paired. It keeps any direction that
                   separates the second words from the first words as groups;
    - random:      cos(w2 − w1, the direction of all pairs) for random pairs of word-like tokens.

    A pair "carries the direction" when its cosine clears the mismatched pairs' mean by two of their
    standard deviations. Every pair is reported, including those that do not, and a word that is
    several tokens is flagged (its vector is the mean of its pieces).
    """
    n = len(pairs)
    if n < 3:
        raise GlassError("a per-pair report needs at least three pairs")
    firsts = [word_vector(model, tokenizer, a, space) for a, _ in pairs]
    seconds = [word_vector(model, tokenizer, b, space) for _, b in pairs]
    A = torch.stack([v for v, _ in firsts])  # (n, d_model)
    B = torch.stack([v for v, _ in seconds])
    unit = F.normalize(B - A, dim=-1)  # (n, d_model)

    def direction_without(*skip: int) -> torch.Tensor:
        keep = [k for k in range(n) if k not in skip]
        return F.normalize(unit[keep].mean(0), dim=0)

    matched = [float(F.cosine_similarity(B[i] - A[i], direction_without(i), dim=0)) for i in range(n)]
    mismatched = torch.tensor([float(F.cosine_similarity(B[j] - A[i], direction_without(i, j), dim=0))
                               for i in range(n) for j in range(n) if i != j])
    W = vocab_matrix(model, space)
    pool = torch.tensor(word_like_ids(tokenizer) or list(range(W.shape[0])))
    g = torch.Generator().manual_seed(seed)
    pick = pool[torch.randint(len(pool), (n_random, 2), generator=g)]
    full = F.normalize(unit.mean(0), dim=0)
    random = F.cosine_similarity(W[pick[:, 1]] - W[pick[:, 0]], full.unsqueeze(0), dim=-1).nan_to_num(0.0)
    mm, ms = float(mismatched.mean()), float(mismatched.std())
    rows = []
    for i, (a, b) in enumerate(pairs):
        pieces = [firsts[i][1], seconds[i][1]]
        rows.append({"pair": [a, b], "cosine": matched[i], "pieces": pieces,
                     "several_tokens": [w for w, p in zip((a, b), pieces) if len(p) > 1],
                     "carries": matched[i] > mm + 2 * ms})
    return {"pairs": rows, "matched_mean": sum(matched) / n, "mismatched_mean": mm, "mismatched_std": ms,
            "random_mean": float(random.mean()), "random_std": float(random.std()), "n_random": n_random}
