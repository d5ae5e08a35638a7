"""The tour's T stops, part 2: attention's weights — what they are (T9, T10, T15) and how gradient descent
learns them (T11–T14, T16) — each next to the control that would show it absent. Part 1 is attention.py."""

from __future__ import annotations

import copy
import math
import statistics

import torch
import torch.nn.functional as F

from ..inspect.attention import attention_patterns
from ..inspect.baselines import ngram_losses
from ..inspect.grad import attention_backward, attention_forward
from ..inspect.multihead import train_heads
from ..inspect.qk import qk_figure
from ..inspect.weights import W_OV, head_weights
from ..tokenizer import CharTokenizer
from .core import Tour, max_diff, one_thread, verdict
from .gpt import SENTENCE


def t9(t: Tour) -> dict:
    """Q, K, V are the input times learned matrices: activations (q), not parameters (W_Q)."""
    s = t.smol()
    attn = s.model.blocks[0].attn
    ids = t.ids(SENTENCE)
    _, cache = s.model.run_with_cache(ids, names=["blocks.0.resid_pre", "blocks.0.attn.q"])
    with torch.no_grad():
        x = s.model.blocks[0].ln1(cache["blocks.0.resid_pre"])
        B, T, _ = x.shape
        q = (x @ attn.W_Q).view(B, T, attn.n_heads, attn.d_head).transpose(1, 2)  # (B, H, T, d_head)
        if attn.rope is not None:
            q = attn.rope(q, torch.arange(T).unsqueeze(0))
    diff = max_diff(q, cache["blocks.0.attn.q"])
    t.say(f"W_Q: a parameter {tuple(attn.W_Q.shape)}; q: an activation {tuple(cache['blocks.0.attn.q'].shape)}")
    t.say(f"q = norm(x)·W_Q (then RoPE), by hand: max difference {diff:.1e}")
    return {"q_by_hand_diff": diff}


def t10(t: Tour) -> dict:
    """The value map: down (W_V) → weighted sum → up (W_O) equals one matrix W_V·W_O applied after the sum."""
    s = t.smol()
    m = s.model
    h = min(4, m.cfg.n_heads - 1)
    ids = t.ids(SENTENCE)
    _, cache = m.run_with_cache(ids, names=["blocks.1.resid_pre", "blocks.1.attn.pattern"])
    w = head_weights(m, 1)
    W_V, W_O = w["W_V"][h], w["W_O"][h]  # head h: (d_model, d_head), (d_head, d_model)
    with torch.no_grad():
        x = m.blocks[1].ln1(cache["blocks.1.resid_pre"])[0]  # (T, d_model)
        p = cache["blocks.1.attn.pattern"][0, h]  # (T, T)
        staged = (p @ (x @ W_V)) @ W_O  # down → weighted sum → up
        single = p @ (x @ W_OV(m, 1)[h])  # one d_model × d_model value matrix
    diff = max_diff(staged, single)
    D, d = m.cfg.d_model, m.cfg.d_head
    t.say(f"layer 1 head {h}: down→sum→up vs one matrix W_OV: max difference {diff:.1e}")
    t.say(f"parameters: W_V + W_O slices {2 * D * d:,} vs a full value matrix {D * D:,}; rank ≤ {d}")
    return {"value_map_diff": diff, "rank": int(torch.linalg.matrix_rank(W_V.double() @ W_O.double()))}


def t11(t: Tour) -> dict:
    """The weights are learned self-supervised, by predicting the next token."""
    toy, shuffled = t.toy(), t.toy(shuffled=True)
    b = toy.baselines
    k = max(1, toy.steps // 10)  # two windows of k steps that never overlap
    if toy.steps < 2 * k:
        t.warn(f"only {toy.steps} training steps: too few for two separate windows")
    first, last = statistics.mean(toy.losses[:k]), statistics.mean(toy.losses[-k:])
    sh_last = statistics.mean(shuffled.losses[-k:])
    t.say(f"target = the input shifted by one; training loss {first:.2f} (steps 1–{k}) → {last:.2f} "
          f"(steps {toy.steps - k + 1}–{toy.steps})")
    t.say(f"the same model and steps on the same characters shuffled: {sh_last:.2f} at the end — against the "
          f"unigram {b['unigram']:.2f} and bigram {b['bigram']:.2f} of the real text")
    t.say(verdict(last < b["bigram"] and sh_last > b["unigram"] - 0.1,
                  "predicting the next token taught the model the text's order; shuffled, there is nothing beyond "
                  "character frequencies to learn, and it stops at the unigram loss",
                  "the training loss did not pass the bigram baseline, or the shuffled control did not stop at "
                  "the unigram"))
    return {"window": k, "train_loss_start": first, "train_loss_end": last, "shuffled_train_loss_end": sh_last,
            "steps": toy.steps, **b}


def t12(t: Tour) -> dict:
    """Each token asks 'whose information do I need?', weighs each answer, and re-reads itself in context."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    labels = [s.tokenizer.decode([int(i)]) for i in ids]
    i = labels.index(" it") if " it" in labels else len(ids) - 1
    p = attention_patterns(s.model, ids)[:, :, i, 1:i + 1].mean(dim=(0, 1))  # mean over layers and heads, skip token 0
    order = p.argsort(descending=True)[:4] + 1
    t.say(f"{labels[i]!r} asks; averaged over every head, it weighs (first token left out): "
          + ", ".join(f"{labels[j]!r} {float(p[j - 1]):.2f}" for j in order))
    return {"query": labels[i], "top": [labels[j] for j in order]}


def t13(t: Tour) -> dict:
    """One head models one kind of relation; several heads model several in parallel (equal size, 3 seeds)."""
    b = t.budget
    text = t.text()[:200_000]
    results = {}
    with torch.enable_grad(), one_thread():
        for H in (1, 4):
            runs = [train_heads(text, H, b.heads_steps, d_model=32, n_layers=2, n_ctx=32, batch_size=16, seed=s)
                    for s in range(b.heads_seeds)]
            vals = [r.val_loss for r in runs]
            results[H] = {"val_loss": vals, "mean": statistics.mean(vals), "sd": statistics.stdev(vals)
                          if len(vals) > 1 else 0.0, "parameters": runs[0].parameters}
            r = results[H]
            t.say(f"{H} head(s) of d_head {32 // H}: {r['parameters']:,} parameters, {b.heads_steps} steps × "
                  f"{b.heads_seeds} seeds → validation loss {r['mean']:.3f} ± {r['sd']:.3f} "
                  f"({', '.join(f'{v:.3f}' for v in vals)})")

    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text))
    split = int(0.9 * len(ids))
    base = ngram_losses(ids[:split], ids[split:], tok.vocab_size)
    diff = results[1]["mean"] - results[4]["mean"]
    noise = 2 * math.sqrt(results[1]["sd"] ** 2 + results[4]["sd"] ** 2) / math.sqrt(max(1, b.heads_seeds))
    t.say(f"baselines on the same text: unigram {base['unigram']:.3f}, bigram {base['bigram']:.3f}")
    se = f"two standard errors over the seeds: {noise:.3f}"
    if diff > noise:
        t.say(f"→ 4 heads beat 1 by {diff:.3f} nats ({se}): several smaller patterns help at equal size here")
    elif diff < -noise:
        t.say(f"→ 1 head beats 4 by {-diff:.3f} nats ({se}): at this size and budget the data contradict "
              "'several heads are better'")
    else:
        t.say(f"→ the difference ({diff:+.3f} nats) is inside {se}: this short run does not separate them "
              "(benchmarks/heads.py runs 600 steps)")
    return {"heads": results, "difference": diff, "noise": noise, **base}


def _per_head(record: dict, key: str) -> torch.Tensor:
    return torch.tensor(record[key], dtype=torch.float64).flatten()  # (n_layers · n_heads,)


def t14(t: Tour) -> dict:
    """Q, K, V start random and specialise through gradient descent — against an untrained model and shuffled data."""
    toy, shuffled = t.toy(), t.toy(shuffled=True)
    start, end, sh_end = toy.qk[0], toy.qk[-1], shuffled.qk[-1]
    keys = ("norm_Q", "norm_K", "entropy", "prev_token", "distance", "principal_cos")
    facts = {}
    t.say(f"per head, mean ± sd over the toy's {len(_per_head(start, 'norm_Q'))} heads:")
    t.say(f"{'':>14} {'untrained':>15} {'trained on text':>17} {'trained, shuffled':>19}")
    for key in keys:
        cols = [_per_head(r, key) for r in (start, end, sh_end)]
        facts[key] = {name: [float(c.mean()), float(c.std())] for name, c in zip(("untrained", "text", "shuffled"), cols)}
        t.say(f"{key:>14} " + " ".join(f"{float(c.mean()):8.3f} ± {float(c.std()):.3f}" for c in cols))
    p = facts["prev_token"]
    t.say(verdict(p["text"][0] > p["shuffled"][0] + 0.05 and p["text"][0] > p["untrained"][0] + 0.05,
                  "the heads specialised on the text's order (previous-token heads appear); trained on shuffled "
                  "characters the same weights grow but no such role forms",
                  "no previous-token specialisation beyond the controls in this budget"))
    t.figure(qk_figure(toy.qk, shuffled.qk, "shuffled text"), "t14_qk.png")
    return facts


def t15(t: Tour) -> dict:
    """One head's data flow."""
    s = t.smol()
    ids = t.ids("The cat sat on the mat")
    _, cache = s.model.run_with_cache(ids, names=["blocks.0.resid_pre"] + [f"blocks.0.attn.{n}" for n in
                                                                        ("q", "k", "v", "scores", "pattern", "z", "out")])
    shape = {n.rsplit(".", 1)[-1]: tuple(v.shape) for n, v in cache.items()}
    flow = (f"x {shape['resid_pre']} ─norm─┬─·W_Q→ q {shape['q']}\n"
            f"{'':{len(str(shape['resid_pre'])) + 9}}├─·W_K→ k {shape['k']}  → scores = q·kᵀ/√d {shape['scores']}"
            f" → mask, softmax → pattern {shape['pattern']}\n"
            f"{'':{len(str(shape['resid_pre'])) + 9}}└─·W_V→ v {shape['v']}  → z = pattern·v {shape['z']}"
            f" → ·W_O, heads summed → out {shape['out']} → added to x")
    t.say(flow)
    return {"shapes": {k: list(v) for k, v in shape.items()}}


def t16(t: Tour) -> dict:
    """∂loss/∂Q is made of K (and ∂loss/∂K of Q): hand-derived gradient = autograd; the Q/K subspaces over training."""
    toy, shuffled = t.toy(), t.toy(shuffled=True)
    model = copy.deepcopy(toy.model).double()
    layer = min(1, model.cfg.n_layers - 1)
    ids = toy.val_ids[: model.cfg.n_ctx + 1].unsqueeze(0)
    saved = {}

    def keep(x, name):
        x.retain_grad()
        saved[name] = x

    names = [f"blocks.{layer}.attn.{n}" for n in "qkvz"]
    with torch.enable_grad(), model.hooks({n: keep for n in names}):
        logits = model(ids[:, :-1])
        F.cross_entropy(logits[0], ids[0, 1:]).backward()
    q, k, v, z = (saved[n] for n in names)
    _, P = attention_forward(q.detach(), k.detach(), v.detach())
    dQ, dK, _ = attention_backward(z.grad, q.detach(), k.detach(), v.detach(), P)
    diff = max(max_diff(dQ, q.grad), max_diff(dK, k.grad))
    scale = float(q.grad.abs().max())
    t.say(f"dQ = dS·K/√d_k, dK = dSᵀ·Q/√d_k vs autograd, layer {layer} of the toy: max difference {diff:.1e} "
          f"(the gradient's largest entry: {scale:.1e})")
    change = {}
    for name, run in (("text", toy), ("shuffled", shuffled)):
        d = _per_head(run.qk[-1], "principal_cos") - _per_head(run.qk[0], "principal_cos")  # per head
        change[name] = {"mean": float(d.mean()), "sd": float(d.std()), "min": float(d.min()), "max": float(d.max())}
    c, s = change["text"], change["shuffled"]
    t.say(f"W_Q/W_K subspace overlap (mean cos of principal angles), change per head from step 0 to "
          f"{toy.steps}: on the text {c['mean']:+.3f} ± {c['sd']:.3f} (from {c['min']:+.3f} to {c['max']:+.3f}); "
          f"on shuffled characters {s['mean']:+.3f} ± {s['sd']:.3f}")
    if c["mean"] < -c["sd"]:
        t.say("→ Q and K moved apart: their roles diverge, as the seed says")
    else:
        t.say("→ Q and K did NOT move into separate subspaces: the overlap grew or stayed within the heads' spread, "
              "so the 'complementary roles' reading of the gradient is not what this training shows")
    return {"grad_diff": diff, "grad_scale": scale, "overlap_change": change}
