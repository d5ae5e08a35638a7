"""The tour's G stops: GPT and the Transformer (G1–G12), each next to the control that would show it absent."""

from __future__ import annotations

import math

import torch

from ..chat import render
from ..describe import describe
from ..errors import ContextLengthError
from ..generate import SampleConfig, generate
from ..inspect import embed
from ..inspect.attention import attention_patterns
from ..inspect.common import token_labels
from ..inspect.heads import distance_by_layer
from ..inspect.lens import lens_logits, logit_lens
from ..inspect.mlp import mlp_ablation, near_zero_fraction
from ..inspect.plots import (curves_figure, distance_sink_figure, lens_figure, mlp_ablation_figure,
                             pair_report_figure, projection_figure, temperature_figure)
from ..model import softmax_with_temperature
from .core import Tour, label, max_diff, verdict

PROMPT = "The capital of France is Paris. The capital of Italy is"
SENTENCE = "The cat sat on the mat because it was tired."
GENESIS = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
           "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
           "And God said, Let there be light: and there was light.")


def g1(t: Tour) -> dict:
    """GPT = Generative + Pre-trained + Transformer."""
    s = t.smol()
    text = generate(s.model, s.tokenizer, "Once upon a time", SampleConfig(max_new_tokens=20, temperature=0))
    t.say(f"pre-trained SmolLM2, greedy: 'Once upon a time{text}'")
    toy = t.toy()
    sample = toy.sample()
    start = sample.find("\n\n") + 2  # a speaker's name, as a play continues
    prompt = sample[start:sample.find("\n", start) + 1] or sample[:20]
    config = SampleConfig(max_new_tokens=80, temperature=0.8, seed=0)
    before = generate(toy.untrained, toy.tokenizer, prompt, config)
    after = generate(toy.model, toy.tokenizer, prompt, config)
    start_loss, end_loss = toy.evals[0][1], toy.evals[-1][1]
    t.say(f"the toy before pre-training (validation loss {start_loss:.2f}):\n{prompt}{before}")
    t.say(f"after {toy.steps} steps of pre-training here (validation loss {end_loss:.2f}; a bigram table: "
          f"{toy.baselines['bigram']:.2f}):\n{prompt}{after}")
    return {"val_loss_start": start_loss, "val_loss_end": end_loss, "bigram": toy.baselines["bigram"]}


def g2(t: Tour) -> dict:
    """Embedding → (Attention → MLP) × N → Unembedding."""
    m = t.smol().model
    t.say(describe(m))
    return {"n_layers": m.cfg.n_layers, "stages": ["embed"] + [f"blocks.{i}" for i in range(m.cfg.n_layers)] + ["unembed"]}


def g3(t: Tour) -> dict:
    """Token → vector; attention updates each vector from its context; the MLP updates each on its own."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    _, cache = s.model.run_with_cache(ids, names=["embed", "blocks.0.resid_mid", "blocks.0.attn.out",
                                                  "blocks.0.mlp.out"])
    block = s.model.blocks[0]
    i = len(ids) - 2
    with torch.no_grad():  # the MLP on one token alone gives what it gave inside the sentence
        alone = block.mlp(block.ln2(cache["blocks.0.resid_mid"][:, i:i + 1]))[0, 0]
        changed = ids.clone()
        changed[0] = s.tokenizer.encode(" A")[0]
        _, cache2 = s.model.run_with_cache(changed, names=["blocks.0.attn.out", "blocks.0.mlp.out"])
    mlp_diff = max_diff(alone, cache["blocks.0.mlp.out"][0, i])
    attn_change = max_diff(cache2["blocks.0.attn.out"][0, i], cache["blocks.0.attn.out"][0, i])
    size = float(cache["blocks.0.attn.out"][0, i].abs().max())
    t.say(f"token {label(s.tokenizer, ids[i])} → a vector of {cache['embed'].shape[-1]} numbers")
    t.say(f"its MLP output computed alone vs inside the sentence: max difference {mlp_diff:.1e} (per token)")
    t.say(f"change the first word: its attention output moves by up to {attn_change:.3f} "
          f"(its largest entry is {size:.3f}) — attention reads the context, the MLP does not")
    return {"mlp_alone_diff": mlp_diff, "attn_context_change": attn_change, "attn_out_size": size}


def g4(t: Tour) -> dict:
    """Shallow layers attend locally, deep layers globally (mean attention distance per layer, sink left out)."""
    s = t.smol()
    ids = t.ids(GENESIS)[: s.model.cfg.n_ctx]
    d = distance_by_layer(attention_patterns(s.model, ids).float())  # from patterns (L, H, T, T)
    raw, rest, sink = d.distance, d.without_first, d.first_share
    L = len(raw)
    (raw_e, raw_l), (rest_e, rest_l), (sink_e, sink_l) = d.early_late(raw), d.early_late(rest), d.early_late(sink)
    t.say(f"{len(ids)} tokens of Genesis; uniform attention would give {d.uniform:.1f} tokens "
          f"({d.uniform_without_first:.1f} without the first token)")
    t.say("layer:            " + " ".join(f"{i:>4}" for i in range(0, L, 3)))
    t.say("distance:         " + " ".join(f"{raw[i]:4.1f}" for i in range(0, L, 3)))
    t.say("share on token 0: " + " ".join(f"{sink[i]:4.2f}" for i in range(0, L, 3)))
    t.say("distance, token 0 left out: " + " ".join(f"{rest[i]:.1f}" for i in range(0, L, 3)))
    t.say(f"first third of the layers vs last third: distance {raw_e:.1f} → {raw_l:.1f}; share on token 0 "
          f"{sink_e:.2f} → {sink_l:.2f}; distance with token 0 left out {rest_e:.1f} → {rest_l:.1f}")
    t.say("→ " + d.verdict())
    uni_raw, uni_rest = d.uniform, d.uniform_without_first
    t.figure(distance_sink_figure(raw, rest, sink, uni_raw, uni_rest, "SmolLM2: attention distance by layer (G4)"),
             "g4_distance.png")
    return {"n_tokens": len(ids), "distance": raw, "distance_without_first": rest,
            "first_token_share": sink, "uniform": uni_raw, "uniform_without_first": uni_rest,
            "distance_early": raw_e, "distance_late": raw_l, "without_first_early": rest_e,
            "without_first_late": rest_l, "sink_early": sink_e, "sink_late": sink_l}


def g5(t: Tour) -> dict:
    """MLP = up-projection → non-linearity → down-projection; what it adds, measured by taking it away."""
    s = t.smol()
    cfg = s.model.cfg
    layer = min(5, cfg.n_layers - 1)
    text = PROMPT + " Rome."
    ids = t.ids(text)
    at = len(t.ids(PROMPT)) - 1  # the position whose next token is " Rome"
    _, cache = s.model.run_with_cache(ids, names=[f"blocks.{layer}.mlp.pre", f"blocks.{layer}.mlp.post"])
    pre, post = cache[f"blocks.{layer}.mlp.pre"][0], cache[f"blocks.{layer}.mlp.post"][0]
    zero_pre, zero_post = near_zero_fraction(pre), near_zero_fraction(post)
    t.say(f"d_model {cfg.d_model} → d_mlp {cfg.d_mlp} (×{cfg.d_mlp / cfg.d_model:.2f}) → d_model; {cfg.mlp}")
    t.say(f"layer {layer}: near zero (< 0.1 × mean |h|) before the non-linearity {zero_pre:.0%}, after it "
          f"{zero_post:.0%}")
    r = mlp_ablation(s.model, ids, answer_at=at)
    answer = s.tokenizer.decode([int(ids[at + 1])])
    t.say(f"'{text}': loss {r.loss:.2f} nats/token, p({answer!r}) = {r.p_answer:.2f} with every MLP in place")
    d = r.delta
    top = d["zero"].argsort(descending=True)[:3].tolist()
    t.say("remove one layer's MLP (zero) vs keep only its mean output (mean) vs scramble its units (shuffle): "
          "loss change")
    for i in top:
        t.say(f"  layer {i:>2}: zero {float(d['zero'][i]):+.2f}, mean {float(d['mean'][i]):+.2f}, "
              f"shuffle {float(d['shuffle'][i]):+.2f};  p({answer!r}) {float(r.p_answer_by['zero'][i]):.2f} / "
              f"{float(r.p_answer_by['mean'][i]):.2f} / {float(r.p_answer_by['shuffle'][i]):.2f}")
    median = {v: float(d[v].median()) for v in d}
    t.say(f"  median over all {cfg.n_layers} layers: zero {median['zero']:+.2f}, mean {median['mean']:+.2f}, "
          f"shuffle {median['shuffle']:+.2f}")
    worst = top[0]
    tokens = [s.tokenizer.decode([int(i)]) for i in ids[1:]]
    hurt = r.token_delta_zero[worst].argsort(descending=True)[:3].tolist()
    t.say(f"without layer {worst}'s MLP the tokens predicted worst are: "
          + ", ".join(f"{tokens[j]!r} {float(r.token_delta_zero[worst, j]):+.1f}" for j in hurt))
    rome_layers = (r.p_answer - r.p_answer_by["zero"]).argsort(descending=True)[:3].tolist()
    without = ", ".join(f"{float(r.p_answer_by['zero'][i]):.2f}" for i in rome_layers)
    t.say(f"the answer {answer!r} depends most on the MLPs of layers {rome_layers} (p without each: {without})")
    per_token = float((r.delta["mean"] > 0.5 * r.delta["zero"]).float().mean())
    z, m = float(d["zero"][worst]), float(d["mean"][worst])
    t.say(f"→ where an MLP matters most (layer {worst}), keeping only its mean output still costs {m:+.2f} of the "
          f"{z:+.2f} nats that removing it costs: it computes something per token. Across layers the constant part is "
          f"much of the effect: in {per_token:.0%} of them the per-token part is at least half")
    t.say(f"→ scrambling the units (same width, same activations, wrong wiring) costs more than removing the MLP at "
          f"the median layer ({median['shuffle']:+.2f} vs {median['zero']:+.2f}): what matters is which unit feeds "
          "which output, not the size of the update")
    t.figure(mlp_ablation_figure(r, "SmolLM2: loss change without one layer's MLP (G5)"), "g5_mlp.png")
    return {"ratio": cfg.d_mlp / cfg.d_model, "near_zero_pre": zero_pre, "near_zero_post": zero_post,
            "loss": r.loss, "p_answer": r.p_answer, "delta": {v: x.tolist() for v, x in d.items()},
            "p_answer_without": {v: x.tolist() for v, x in r.p_answer_by.items()}, "answer_layers": rome_layers,
            "per_token_share": per_token, "top_layer": worst, "median": median}


def g6(t: Tour) -> dict:
    """Each layer builds on the last (the logit lens: the best guess at each layer)."""
    s = t.smol()
    ids = t.ids(PROMPT)
    lens = logit_lens(s.model, ids, k=3)
    tops = [s.tokenizer.decode([int(i)]) for i in lens.top_ids[:, -1, 0]]
    final = tops[-1]
    final_id = int(lens.top_ids[-1, -1, 0])
    first = next(i for i in range(len(tops)) if all(x == final for x in tops[i:]))
    _, logits, _ = lens_logits(s.model, ids)
    p_final = logits[:, -1].float().softmax(-1)[:, final_id]  # (stages,): the final answer's probability, layer by layer
    for i in list(range(0, len(tops) - 1, max(1, len(tops) // 10))):
        t.say(f"{lens.layer_names[i]:>10}: top {tops[i]!r} {float(lens.top_probs[i, -1, 0]):.2f}; "
              f"p({final!r}) = {float(p_final[i]):.3f}")
    t.say(f"{lens.layer_names[-1]:>10}: top {final!r} {float(lens.top_probs[-1, -1, 0]):.2f}")
    chance = 1 / s.model.cfg.d_vocab
    t.say(f"'{PROMPT}' → {final!r}, the top guess from {lens.layer_names[first]} on; before that its probability "
          f"stays below {float(p_final[:first].max()):.3f} (chance: 1/{s.model.cfg.d_vocab} = {chance:.1e})")
    t.figure(lens_figure(lens, s.tokenizer, token_labels(s.tokenizer, ids.tolist()), "SmolLM2 logit lens (G6)"),
             "g6_lens.png")
    return {"final": final, "settles_at": first, "n_stages": len(tops), "p_final": p_final.tolist()}


def g7(t: Tour) -> dict:
    """Stacking approximates the next-token distribution: the loss against what simple counts of the data achieve."""
    toy = t.toy()
    b = toy.baselines
    xs, ys = zip(*toy.evals)
    t.say(f"on the held-out text, fitted on the training text: uniform ln({toy.tokenizer.vocab_size}) = "
          f"{b['uniform']:.2f}, character frequencies (unigram) {b['unigram']:.2f}, previous character (bigram) "
          f"{b['bigram']:.2f} nats")
    t.say(f"validation loss: {ys[0]:.2f} at step 0 → {ys[-1]:.2f} at step {xs[-1]}")
    t.say(verdict(ys[-1] < b["bigram"], f"{b['bigram'] - ys[-1]:.2f} nats below the bigram table: the model uses "
                  "more context than one character",
                  f"the loss is still {ys[-1] - b['bigram']:+.2f} nats from the bigram table after {xs[-1]} steps"))
    fig = curves_figure({"validation loss": (list(xs), list(ys)),
                         **{f"{name} {v:.2f}": ([xs[0], xs[-1]], [v, v]) for name, v in b.items()}},
                        "step", "nats per character", "the toy model's loss against count baselines (G7)")
    t.figure(fig, "g7_loss.png")
    return {**b, "val_loss_start": ys[0], "val_loss_end": ys[-1], "steps": toy.steps}


def g8(t: Tour) -> dict:
    """The core unit is the Transformer block = self-attention + MLP."""
    s = t.smol()
    n = min(3, s.model.cfg.n_layers - 1)
    block = s.model.blocks[n]
    _, cache = s.model.run_with_cache(t.ids(SENTENCE), names=[f"blocks.{n}.resid_pre", f"blocks.{n}.resid_post"])
    x0 = cache[f"blocks.{n}.resid_pre"]
    positions = torch.arange(x0.shape[1]).unsqueeze(0)  # (1, T), for RoPE
    with torch.no_grad():
        x = x0 + block.attn(block.ln1(x0), positions=positions)  # the block's two lines, by hand
        x = x + block.mlp(block.ln2(x))
    diff = max_diff(x, cache[f"blocks.{n}.resid_post"])
    change = max_diff(x0, cache[f"blocks.{n}.resid_post"])
    t.say(f"x = x + attn(ln1(x)); x = x + mlp(ln2(x))  — recomputed by hand for block {n}: "
          f"max difference {diff:.1e} (the block itself moves x by up to {change:.2f})")
    return {"block_by_hand_diff": diff, "block_change": change}


def g9(t: Tour) -> dict:
    """Embedding directions carry meaning: cats − cat ≈ plural, woman − man ≈ female."""
    s = t.smol()
    m, tok = s.model, s.tokenizer
    result = embed.analogy(m, tok, "king", "man", "woman", k=5)
    t.say("king − man + woman ≈ " + ", ".join(f"{w!r} {c:.2f}" for w, c in result))
    plural = [("cat", "cats"), ("dog", "dogs"), ("house", "houses"), ("car", "cars"), ("tree", "trees"),
              ("book", "books"), ("bird", "birds"), ("river", "rivers")]
    female = [("man", "woman"), ("king", "queen"), ("boy", "girl"), ("father", "mother"), ("brother", "sister"),
              ("son", "daughter"), ("husband", "wife"), ("uncle", "aunt")]
    facts = {"analogy": [w for w, _ in result]}
    for name, pairs in (("plural", plural), ("female", female)):
        r = embed.pair_report(m, tok, pairs)
        t.say(f"{name}: each pair's difference against the direction of the other pairs (cosine); controls: "
              f"mismatched pairs {r['mismatched_mean']:.2f} ± {r['mismatched_std']:.2f}, random word pairs "
              f"{r['random_mean']:.2f} ± {r['random_std']:.2f}")
        t.say("  " + ", ".join(f"{a}→{b} {row['cosine']:.2f}{'' if row['carries'] else ' (within 2 sd of mismatched)'}"
                               for row, (a, b) in zip(r["pairs"], pairs)))
        several = [w for row in r["pairs"] for w in row["several_tokens"]]
        if several:
            t.say(f"  several tokens each (their vectors are the mean of the pieces): {', '.join(several)}")
        carried = sum(row["carries"] for row in r["pairs"])
        above = sum(row["cosine"] > r["mismatched_mean"] for row in r["pairs"])
        t.say(f"  matched pairs {r['matched_mean']:.2f} on average; {above} of {len(pairs)} above the mismatched "
              f"mean, {carried} of {len(pairs)} by two standard deviations")
        if above <= len(pairs) // 2:
            t.say(f"  → NOT SHOWN: the {name} pairs align no better than the same words wrongly paired")
        else:
            t.say(f"  → a {name} direction exists, but mismatched pairs get {r['mismatched_mean']:.2f} of the matched "
                  f"{r['matched_mean']:.2f}: much of it separates the two groups of words, not each word from its "
                  "partner")
        r["above_mismatched"], r["carried"] = above, carried
        facts[name] = r
        t.figure(pair_report_figure(r, f"SmolLM2 W_E: {name} pairs vs controls (G9)"), f"g9_{name}.png")
    d = embed.direction(m, tok, female[:4])
    tests = [("actor", "actress"), ("prince", "princess"), ("nephew", "niece"), ("waiter", "waitress"),
             ("duke", "duchess"), ("hero", "heroine")]
    words = [w for p in tests for w in p] + ["table", "river"]
    values = dict(embed.project(m, tok, words, d))
    rows = []
    for a, b in tests:
        pieces = [len(embed.word_ids(tok, w)) for w in (a, b)]
        rows.append({"pair": [a, b], "male": values[a], "female": values[b], "right_way": values[b] > values[a],
                     "several_tokens": [w for w, n in zip((a, b), pieces) if n > 1]})
    t.say("along mean(woman − man, queen − king, girl − boy, mother − father), pairs not used to build it:")
    for row in rows:
        a, b = row["pair"]
        note = f"  [{', '.join(row['several_tokens'])}: several tokens]" if row["several_tokens"] else ""
        t.say(f"  {a} {row['male']:+.2f} → {b} {row['female']:+.2f}  "
              f"{'right way' if row['right_way'] else 'WRONG WAY'}{note}")
    t.figure(projection_figure(list(values.items()), "SmolLM2 W_E along mean(woman − man, queen − king, …)"),
             "g9_projection.png")
    facts["projection"] = rows
    return facts


def g10(t: Tour) -> dict:
    """The system prompt is the initial context; the user's first question is the first turn."""
    s = t.smol()
    if not s.chat_template:
        t.warn("this model has no chat template: G10 cannot be shown")
        return {}
    system, question = "You are a terse assistant.", "What is attention?"
    text = render(s.chat_template, [{"role": "system", "content": system}, {"role": "user", "content": question}])
    bare = render(s.chat_template, [{"role": "user", "content": question}])
    t.say(text)
    ids, bare_ids = s.tokenizer.encode(text), s.tokenizer.encode(bare)
    with torch.no_grad():  # the system prompt is context: the reply's first-token distribution moves with it
        p = s.model(torch.tensor([ids]))[0, -1].float().softmax(-1)
        q = s.model(torch.tensor([bare_ids]))[0, -1].float().softmax(-1)
    tv = float(0.5 * (p - q).abs().sum())
    t.say(f"with the system prompt the reply's first-token distribution differs from the one without it by "
          f"{tv:.2f} (total variation, 0 = identical, 1 = disjoint)")
    return {"system_first": text.index(system) < text.index(question), "context_tokens": len(ids),
            "system_changes_reply": tv}


def g11(t: Tour) -> dict:
    """What flows through attention is bounded by the context length."""
    m = t.smol().model
    n = m.cfg.n_ctx
    try:
        m(torch.zeros(1, n + 1, dtype=torch.long))  # the model refuses before computing anything
        message = ""
    except ContextLengthError as e:
        message = str(e)
    t.say(f"context window n_ctx = {n}; the attention pattern is at most {n} × {n}")
    t.say(f"{n + 1} tokens: {message}")
    return {"n_ctx": n, "error": message}


def g12(t: Tour) -> dict:
    """Logits → softmax → probabilities; temperature divides the logits: e^(x/T) / Σ e^(x/T)."""
    s = t.smol()
    with torch.no_grad():
        logits = s.model(t.ids(PROMPT).unsqueeze(0))[0, -1].float()
    top = logits.topk(8).indices
    labels = [s.tokenizer.decode([int(i)]) for i in top]
    probs, entropy, by_hand_diff = {}, {}, 0.0
    for T in (0.2, 1.0, 2.0):
        p = softmax_with_temperature(logits, T)
        by_hand = torch.exp((logits - logits.max()) / T) / torch.exp((logits - logits.max()) / T).sum()
        by_hand_diff = max(by_hand_diff, max_diff(p, by_hand))
        probs[T] = p[top]
        entropy[T] = float(-(p * p.clamp_min(1e-30).log()).sum())
        t.say(f"T = {T:<4g} " + ", ".join(f"{w!r} {float(q):.3f}" for w, q in zip(labels[:4], p[top][:4]))
              + f"  (entropy {entropy[T]:.2f} nats)")
    t.say(f"softmax_with_temperature vs e^(x/T)/Σe^(x/T) by hand: max difference {by_hand_diff:.1e}")
    t.figure(temperature_figure(probs, labels, f"next token after '…{PROMPT[-20:]}' (G12)"), "g12_temperature.png")
    return {"top_prob": {T: float(p[0]) for T, p in probs.items()}, "entropy": entropy, "by_hand_diff": by_hand_diff,
            "uniform_entropy": math.log(s.model.cfg.d_vocab)}
