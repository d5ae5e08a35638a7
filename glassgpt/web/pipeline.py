"""One token through the model, stage by stage, with the real numbers (the explorer's Pipeline panel).

`pipeline(loaded, ids, position, layer, head, sampling)` follows the token at `position`
through layer `layer` and head `head`, reading every tensor from the model's own hooks
(`run_with_cache`: embed, blocks.L.resid_pre, attn.q/k/v/scores/pattern/z, resid_mid,
mlp.pre/post/out, resid_post, final_norm, logits), so it works on any model glassgpt loads:
GPT-2 style (W_pos, LayerNorm, GELU) and Llama style (RoPE, RMSNorm, SwiGLU, grouped-query).

Attention is causal, so the token at `position` sees only tokens 0..position: the model runs
on those alone and computes the logits of that position only. Memory is that of one forward
pass over position + 1 tokens, plus one layer's (n_heads, T, T) scores.

JSON has no infinities. The masked scores row has one entry per prompt token: a number for
each key the query may read (j ≤ position) and `null` for each masked key (j > position),
which stands for −∞ — the value the mask writes before the softmax (T6).
"""

from __future__ import annotations

import torch

from ..errors import GlassError
from ..generate import SampleConfig, Sampler
from ..inspect.common import W_U_of, check_head, check_layer
from ..load import Loaded
from . import tokens as tokview

TOP_UNITS = 8  # the MLP units listed by name
TOP_TOKENS = 10  # the logits and the lens listed by name


def floats(t: torch.Tensor) -> list[float]:
    """A float32 vector as a JSON list (each value exactly the float32 the model computed)."""
    return t.detach().float().flatten().tolist()


def _norm(t: torch.Tensor) -> float:
    return float(t.float().norm())


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


def _vector(t: torch.Tensor, final: torch.Tensor | None = None) -> dict:
    out = {"values": floats(t), "norm": _norm(t)}
    if final is not None:
        out["cos_final"] = _cos(t, final)
    return out


@torch.no_grad()
def pipeline(loaded: Loaded, ids: list[int], position: int, layer: int, head: int,
             sampling: SampleConfig) -> dict:
    model, tok = loaded.model, loaded.tokenizer
    cfg = model.cfg
    T = len(ids)
    if not 0 <= position < T:
        raise GlassError(f"position {position} is out of range: the prompt has positions 0..{T - 1}")
    check_layer(model, layer)
    check_head(model, head)
    L, last = layer, cfg.n_layers - 1
    kv_head = head // (cfg.n_heads // cfg.n_kv_heads)  # the key/value head that serves this query head (GQA)
    block = model.blocks[L]
    names = ["embed", f"blocks.{L}.resid_pre", f"blocks.{L}.attn.q", f"blocks.{L}.attn.k", f"blocks.{L}.attn.v",
             f"blocks.{L}.attn.scores", f"blocks.{L}.attn.pattern", f"blocks.{L}.attn.z", f"blocks.{L}.attn.out",
             f"blocks.{L}.resid_mid", f"blocks.{L}.mlp.pre", f"blocks.{L}.mlp.post", f"blocks.{L}.mlp.out",
             f"blocks.{L}.resid_post", f"blocks.{last}.resid_post", "final_norm", "logits"]
    tokens = torch.tensor([ids[: position + 1]])  # causal: the later tokens cannot change this position
    was_training = model.training
    model.eval()
    try:
        _, cache = model.run_with_cache(tokens, names=list(dict.fromkeys(names)), last_only=True)
    finally:
        model.train(was_training)
    p = position

    def at(name: str) -> torch.Tensor:  # (d,) at this position
        return cache[name][0, -1]

    final = at(f"blocks.{last}.resid_post")  # the residual stream the unembedding reads
    W_E_row = model.embed.W_E[ids[p]]
    W_pos_row = model.embed.W_pos[p] if model.embed.W_pos is not None else None

    # attention, one head
    q = cache[f"blocks.{L}.attn.q"][0, head, -1]  # (d_head,)
    k_all = cache[f"blocks.{L}.attn.k"][0, kv_head]  # (p+1, d_head)
    v_all = cache[f"blocks.{L}.attn.v"][0, kv_head]
    raw = cache[f"blocks.{L}.attn.scores"][0, head, -1]  # (p+1,): q·kⱼ/√d_head for the keys it may read
    pattern = cache[f"blocks.{L}.attn.pattern"][0, head, -1]  # (p+1,)
    z = cache[f"blocks.{L}.attn.z"][0, head, -1]  # (d_head,)
    d_head = cfg.d_head
    W_O_h = block.attn.W_O[head * d_head:(head + 1) * d_head].float()  # (d_head, d_model)
    head_write = z.float() @ W_O_h  # (d_model,): this head's share of the attention output
    contributions = (pattern.float().unsqueeze(1) * v_all.float())  # (p+1, d_head): pattern_j · v_j
    top_keys = torch.argsort(pattern, descending=True)[:5].tolist()

    # MLP
    mlp = block.mlp
    pre, post = at(f"blocks.{L}.mlp.pre"), at(f"blocks.{L}.mlp.post")
    units = torch.argsort(post.float().abs(), descending=True)[:TOP_UNITS].tolist()

    # the logit lens at this layer, and the real output
    W_U = W_U_of(model)
    lens_logits = (model.unembed.norm(at(f"blocks.{L}.resid_post").unsqueeze(0)) @ W_U.to(final.dtype))[0]
    logits = cache["logits"][0, -1].float()  # (d_vocab,)
    sampler = Sampler(sampling)
    probs = sampler.probs(logits.unsqueeze(0))[0]
    sampled = int(sampler.sample(logits.unsqueeze(0))[0])
    order = torch.argsort(logits, descending=True)[:TOP_TOKENS].tolist()
    lens_probs = torch.softmax(lens_logits.float(), dim=-1)
    lens_top = torch.topk(lens_probs, min(5, lens_probs.shape[0]))

    return {
        "position": p, "layer": L, "head": head, "kv_head": kv_head, "n_tokens": T,
        "arch": {"positions": cfg.positions, "norm": cfg.norm, "mlp": cfg.mlp, "n_heads": cfg.n_heads,
                 "n_kv_heads": cfg.n_kv_heads, "d_model": cfg.d_model, "d_head": d_head, "d_mlp": cfg.d_mlp,
                 "n_layers": cfg.n_layers, "tied": model.unembed.W_U is None},
        "token": tokview.chip(tok, ids[p]),
        "embed": {"W_E_row": _vector(W_E_row),
                  "W_pos_row": None if W_pos_row is None else _vector(W_pos_row),
                  "x": _vector(at("embed"), final)},
        "resid_pre": _vector(at(f"blocks.{L}.resid_pre"), final),
        "ln1": _vector(block.ln1(at(f"blocks.{L}.resid_pre").unsqueeze(0))[0]),
        "q": _vector(q), "k": _vector(k_all[-1]), "v": _vector(v_all[-1]),
        "scale": d_head ** -0.5,
        "scores": floats(raw) + [None] * (T - p - 1),  # None: −∞, masked (a later token)
        "pattern": floats(pattern) + [0.0] * (T - p - 1),
        "top_keys": [{"position": j, "weight": float(pattern[j]), "score": float(raw[j]),
                      "v_norm": _norm(v_all[j]), "contribution_norm": _norm(contributions[j])} for j in top_keys],
        "z": _vector(z),
        "head_write": _vector(head_write),
        "attn_out": _vector(at(f"blocks.{L}.attn.out")),
        "resid_mid": _vector(at(f"blocks.{L}.resid_mid"), final),
        "ln2": _vector(block.ln2(at(f"blocks.{L}.resid_mid").unsqueeze(0))[0]),
        "mlp": {"kind": mlp.kind, "pre": _vector(pre), "post": _vector(post),
                "units": [{"unit": u, "pre": float(pre[u]), "post": float(post[u])} for u in units],
                "out": _vector(at(f"blocks.{L}.mlp.out"))},
        "resid_post": _vector(at(f"blocks.{L}.resid_post"), final),
        "lens": [dict(tokview.chip(tok, int(i)), prob=float(pr))
                 for pr, i in zip(lens_top.values.tolist(), lens_top.indices.tolist())],
        "final_norm": _vector(at("final_norm")),
        "logits": [dict(tokview.chip(tok, i), logit=float(logits[i]), prob=float(probs[i])) for i in order],
        "sampling": {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                     "min_p": sampling.min_p, "seed": sampling.seed,
                     "kept": int((probs > 0).sum())},
        "sampled": dict(tokview.chip(tok, sampled), logit=float(logits[sampled]), prob=float(probs[sampled])),
    }
