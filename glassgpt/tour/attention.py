"""The tour's T stops, part 1: what attention computes (T1–T8), each next to the control that would
show it absent. Part 2, attention's weights and how they are learned (T9–T16), is in weights.py."""

from __future__ import annotations

import copy
import math
import statistics

import torch
import torch.nn.functional as F

from ..inspect.attention import attention_patterns, attention_scores
from ..inspect.common import token_labels
from ..inspect.multihead import val_loss
from ..inspect.plots import attention_heatmap, cosine_matrix_figure, curves_figure
from ..seq2seq.model import EncoderDecoder
from ..seq2seq.pooling import PoolingClassifier
from ..seq2seq.task import _ONES, _TENS, Task, TaskConfig
from ..seq2seq.train import (TrainConfig, accuracy, classifier_config, exact_match, train_classifier,
                             train_translator, translator_config)
from .core import Tour, max_diff, one_thread, verdict
from .gpt import SENTENCE


def t1(t: Tour) -> dict:
    """Query = what a token looks for; Key = what it offers; Value = what it passes on."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    _, cache = s.model.run_with_cache(ids, names="blocks.0.attn.*")
    q, k, v = (cache[f"blocks.0.attn.{n}"] for n in "qkv")
    cfg = s.model.cfg
    t.say(f"layer 0: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}  (B, heads, T, d_head)")
    t.say(f"{cfg.n_heads} query heads share {cfg.n_kv_heads} key/value heads (grouped-query attention)")
    return {"q": list(q.shape), "k": list(k.shape), "v": list(v.shape)}


def t2(t: Tour) -> dict:
    """Attention = Q·K similarity → normalise → weighted sum of V (step by step)."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    n = min(2, s.model.cfg.n_layers - 1)
    _, cache = s.model.run_with_cache(ids, names=f"blocks.{n}.attn.*")
    q, k, v, z = (cache[f"blocks.{n}.attn.{name}"][0] for name in ("q", "k", "v", "z"))
    group = s.model.cfg.n_heads // s.model.cfg.n_kv_heads
    k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)  # (H, T, d_head)
    T = len(ids)
    similarity = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # step 1: Q·K
    weights = torch.softmax(similarity.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), -math.inf), -1)  # 2
    out = weights @ v  # step 3: weighted sum of V
    diff = max(max_diff(weights, cache[f"blocks.{n}.attn.pattern"][0]), max_diff(out, z))
    t.say(f"layer {n}, by hand: scores → softmax → weighted sum of V; max difference from the model {diff:.1e}")
    return {"by_hand_diff": diff}


def t3(t: Tour) -> dict:
    """softmax(QKᵀ/√d_k)·V; the scale keeps values numerically stable. The explicit path equals the fused kernel."""
    s = t.smol()
    m = s.model
    ids = t.ids(SENTENCE).unsqueeze(0)
    with torch.no_grad():
        fused = m(ids)
        for b in m.blocks:
            b.attn.explicit = True
        try:
            explicit = m(ids)
        finally:
            for b in m.blocks:
                b.attn.explicit = False
    g = torch.Generator().manual_seed(0)
    d = m.cfg.d_head
    qr, kr = torch.randn(1000, d, generator=g), torch.randn(1000, d, generator=g)
    raw = (qr * kr).sum(-1)
    diff = max_diff(fused, explicit)
    t.say(f"fused kernel vs explicit softmax(QKᵀ/√d_k)·V: max logit difference {diff:.1e}")
    t.say(f"for random unit-variance q, k with d_k = {d}: std of q·k = {float(raw.std()):.1f}, "
          f"of q·k/√d_k = {float((raw / math.sqrt(d)).std()):.2f}")
    return {"fused_vs_explicit": diff, "std_raw": float(raw.std()), "std_scaled": float((raw / math.sqrt(d)).std())}


def t4(t: Tour) -> dict:
    """Q/K similarity rests on the embeddings' meaning: the embedding matrix before and after training."""
    toy = t.toy()
    tok = toy.tokenizer
    chars = {tok.decode([i]): i for i in range(tok.vocab_size)}
    lower = [c for c in "abcdefghijklmnopqrstuvwxyz" if c in chars and c.upper() in chars]
    vowels = [c for c in "aeiou" if c in lower]
    facts = {}
    for name, model in (("untrained", toy.untrained), ("trained", toy.model)):
        W = F.normalize(model.embed.W_E.detach().float(), dim=-1)  # (V, d_model), unit rows
        cos = W @ W.T  # (V, V)
        same = [float(cos[chars[c], chars[c.upper()]]) for c in lower]  # a ↔ A
        other = [float(cos[chars[c], chars[d.upper()]]) for c in lower for d in lower if c != d]  # a ↔ B
        vv = [float(cos[chars[a], chars[b]]) for a in vowels for b in vowels if a < b]
        vc = [float(cos[chars[a], chars[b]]) for a in vowels for b in lower if b not in vowels]
        classes = [[c for c in chars if c.isupper()], [c for c in chars if c.islower()],
                   [c for c in chars if not c.isalnum() and not c.isspace()]]  # capitals, small letters, punctuation
        within = [float(cos[chars[a], chars[b]]) for group in classes for a in group for b in group if a < b]
        across = [float(cos[chars[a], chars[b]]) for g1 in range(3) for g2 in range(g1 + 1, 3)
                  for a in classes[g1] for b in classes[g2]]
        near = {c: [tok.decode([int(j)]) for j in cos[chars[c]].argsort(descending=True)[1:4]] for c in ("e", "T", ".")
                if c in chars}
        facts[name] = {"case_pairs": statistics.mean(same), "other_pairs": statistics.mean(other),
                       "other_pairs_sd": statistics.stdev(other), "vowel_vowel": statistics.mean(vv),
                       "vowel_consonant": statistics.mean(vc), "within_class": statistics.mean(within),
                       "across_class": statistics.mean(across), "nearest": near}
        f = facts[name]
        t.say(f"{name:>9} W_E: mean cosine within capitals / small letters / punctuation {f['within_class']:+.2f} vs "
              f"across them {f['across_class']:+.2f}; vowel–vowel {f['vowel_vowel']:+.2f} vs vowel–consonant "
              f"{f['vowel_consonant']:+.2f}; cos(a, A) {f['case_pairs']:+.2f} vs cos(a, B) {f['other_pairs']:+.2f}; "
              "nearest to " + ", ".join(f"{c!r}: {''.join(n)!r}" for c, n in near.items()))
    u, tr = facts["untrained"], facts["trained"]
    gap = lambda f: f["case_pairs"] - f["other_pairs"]  # noqa: E731
    vowels_gap = lambda f: f["vowel_vowel"] - f["vowel_consonant"]  # noqa: E731
    class_gap = lambda f: f["within_class"] - f["across_class"]  # noqa: E731
    t.say(verdict(class_gap(tr) > class_gap(u) + 0.2 and vowels_gap(tr) > vowels_gap(u) + 0.2,
                  f"training grouped the characters by what they do in the text (classes {class_gap(u):+.2f} → "
                  f"{class_gap(tr):+.2f}, vowels {vowels_gap(u):+.2f} → {vowels_gap(tr):+.2f}); the random ones "
                  "carry no such meaning",
                  "the trained embeddings do not group the characters more than the untrained ones"))
    t.say(("  and it pulled each letter's two cases together" if gap(tr) > gap(u) + 2 * tr["other_pairs_sd"]
           / math.sqrt(len(lower)) else "  but it did not pull a letter's two cases together beyond chance")
          + f" (cos(a, A) − cos(a, B): {gap(u):+.2f} → {gap(tr):+.2f})")
    swapped = copy.deepcopy(toy.model)
    swapped.embed.W_E.data.copy_(toy.untrained.embed.W_E.data)  # the trained network on its random embeddings
    own, other = val_loss(toy.model, toy.val_ids, toy.model.cfg.n_ctx), val_loss(swapped, toy.val_ids,
                                                                                 toy.model.cfg.n_ctx)
    t.say(f"the trained network with its own embeddings: validation loss {own:.2f}; with the untrained embeddings "
          f"put back (everything else trained): {other:.2f} (uniform {toy.baselines['uniform']:.2f}) — what "
          "attention and the MLPs learned is useless without the embeddings they learned with")
    keep = [chars[c] for c in sorted(chars) if c.isalpha()] + [chars[c] for c in " .,;:!?'\n" if c in chars]
    labels = token_labels(tok, keep)
    mats = {}
    for name, model in (("untrained", toy.untrained), (f"after {toy.steps} steps", toy.model)):
        W = F.normalize(model.embed.W_E.detach().float()[keep], dim=-1)
        mats[name] = W @ W.T
    t.figure(cosine_matrix_figure(mats, labels, "the toy's W_E: cosine between characters (T4)"), "t4_embeddings.png")
    facts.update({"val_loss_own_embeddings": own, "val_loss_untrained_embeddings": other})
    return facts


def t5(t: Tour) -> dict:
    """Self-attention, cross-attention (translation), multi-head, and fixed learned queries — trained."""
    b = t.budget
    task = Task(TaskConfig(name="digits-to-words", max_number=999))
    cfg = translator_config(task, d_model=32, n_heads=4, n_enc_layers=1, n_dec_layers=1, d_mlp=64)
    train_cfg = TrainConfig(steps=b.translator_steps, batch_size=32, lr=3e-3, warmup=20, seed=0)
    with torch.enable_grad(), one_thread():
        model, _ = train_translator(task, cfg, train_cfg)
    torch.manual_seed(train_cfg.seed)  # train_translator's own initialisation, replayed
    untrained = EncoderDecoder(cfg, pad_id=task.src_vocab.pad_id).eval()
    held = task.test_numbers
    em, _ = exact_match(model, task, held)
    em0, _ = exact_match(untrained, task, held)
    # cross-attention: for "X hundred Y-Z", X's letters should read digit 0, Y's digit 1, Z's digit 2
    numbers = [n for n in held if n % 100 >= 20 and n % 10]
    right = {"trained": [], "untrained": []}
    for n in numbers:
        h, tens, ones = n // 100, n // 10 % 10, n % 10
        words = [(_ONES[h], 0), (" hundred ", None), (_TENS[tens], 1), ("-", None), (_ONES[ones], 2)]
        expect = [d for w, d in words for _ in w]  # the source digit each target character should read
        src, tgt_in, _ = task.translation_batch([n])
        for name, m in (("trained", model), ("untrained", untrained)):
            _, cache = m.run_with_cache(src, tgt_in, names="decoder.blocks.0.cross_attn.pattern")
            looks = cache["decoder.blocks.0.cross_attn.pattern"][0].mean(0).argmax(-1)  # (T,) over heads
            right[name] += [int(looks[p]) == d for p, d in enumerate(expect) if d is not None]
    align = {k: sum(v) / len(v) for k, v in right.items()}
    t.say(f"cross-attention (queries from the words being written, keys and values from the digits), trained "
          f"{b.translator_steps} steps on 0–999: held-out numbers exactly right {em:.0%} (untrained twin {em0:.0%})")
    t.say(f"  letters of 'X hundred Y-Z' whose cross-attention peaks on their own digit: trained {align['trained']:.0%}"
          f", untrained {align['untrained']:.0%} (chance: 1 in 3)")
    t.say(verdict(align["trained"] > align["untrained"] + 0.2, "each word reads the digit it spells",
                  "the cross-attention is not aligned with the digits after this budget"))
    sorted_task = Task(TaskConfig(name="sorted", max_len=6))
    pool_cfg = classifier_config(sorted_task, d_model=32, n_layers=1, d_mlp=64)
    train_cfg = TrainConfig(steps=b.classifier_steps, batch_size=32, lr=3e-3, warmup=20, seed=0)
    with torch.enable_grad(), one_thread():
        clf, _ = train_classifier(sorted_task, pool_cfg, train_cfg)
    torch.manual_seed(train_cfg.seed)
    clf0 = PoolingClassifier(pool_cfg, pad_id=sorted_task.src_vocab.pad_id).eval()
    acc, acc0 = accuracy(clf, sorted_task), accuracy(clf0, sorted_task)
    src = sorted_task.encode_sources(["13579", "31579"])
    _, cache = clf.run_with_cache(src, names="pool.attn.pattern")
    q_pattern = cache["pool.attn.pattern"]  # (B, H, n_queries, S)
    t.say(f"fixed learned queries ({pool_cfg.n_queries} questions learned as parameters, not computed from any "
          f"token), trained {b.classifier_steps} steps to tell sorted digit strings: accuracy {acc:.0%} on fresh "
          f"examples (untrained twin {acc0:.0%}; half the examples are sorted); pattern {tuple(q_pattern.shape)}")
    t.say(verdict(acc > 0.7 and acc > acc0 + 0.15, "fixed queries, once trained, read what the class depends on",
                  "the classifier did not learn its task in this budget"))
    toy = t.toy()
    t.say(f"self-attention and multi-head: the toy's {toy.model.cfg.n_layers} layers × {toy.model.cfg.n_heads} heads "
          "(T14's table shows the heads doing different things)")
    return {"translation_exact": em, "translation_exact_untrained": em0, "alignment": align,
            "classifier_accuracy": acc, "classifier_accuracy_untrained": acc0,
            "learned_pattern": list(q_pattern.shape)}


def t6(t: Tour) -> dict:
    """Causal mask: later tokens cannot affect earlier ones."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    i = len(ids) // 2
    changed = ids.clone()
    changed[i] = (int(ids[i]) + 1000) % s.model.cfg.d_vocab
    with torch.no_grad():
        a, b = s.model(ids.unsqueeze(0))[0], s.model(changed.unsqueeze(0))[0]
    before, after = max_diff(a[:i], b[:i]), max_diff(a[i:], b[i:])
    t.say(f"token {i} changed: logits at positions 0..{i - 1} move by {before:.1e}, at {i}..{len(ids) - 1} by {after:.2f}")
    return {"earlier_change": before, "later_change": after}


def t7(t: Tour) -> dict:
    """Residual connections keep low-level information: each layer adds to the stream instead of replacing it."""
    s = t.smol()
    L = s.model.cfg.n_layers
    names = ["embed"] + [f"blocks.{i}.{n}" for i in range(L) for n in ("resid_pre", "attn.out", "mlp.out")]
    _, cache = s.model.run_with_cache(t.ids(SENTENCE), names=names + [f"blocks.{L - 1}.resid_post"])
    total = cache["embed"][0] + sum(cache[f"blocks.{i}.attn.out"][0] + cache[f"blocks.{i}.mlp.out"][0] for i in range(L))
    diff = max_diff(total, cache[f"blocks.{L - 1}.resid_post"][0]) / float(total.abs().max())
    ratio = []
    for i in range(L):  # the size of what layer i writes, relative to the stream it reads (positions ≥ 1)
        write = cache[f"blocks.{i}.attn.out"][0] + cache[f"blocks.{i}.mlp.out"][0]
        ratio.append(float((write.norm(dim=-1) / cache[f"blocks.{i}.resid_pre"][0].norm(dim=-1))[1:].median()))
    e, last = cache["embed"][0], cache[f"blocks.{L - 1}.resid_post"][0]
    cos = float(F.cosine_similarity(last, e, dim=-1)[1:].mean())
    t.say(f"final stream = embedding + Σ every layer's attention and MLP output (relative difference {diff:.1e})")
    t.say("size of each layer's update / size of the stream it reads: " + " ".join(f"{r:.2f}" for r in ratio[::3]))
    t.say(f"(SmolLM2's block 0 rewrites the raw embedding: the final stream's cosine with it is {cos:.2f})")
    ids = t.ids(SENTENCE)
    W_E = F.normalize(s.model.embed.W_E.detach().float(), dim=-1)  # (V, d_model)
    found = []
    for i in range(L):  # is the input token still the nearest embedding to the stream entering layer i?
        stream = F.normalize(cache[f"blocks.{i}.resid_pre"][0].float(), dim=-1)  # (T, d_model)
        found.append(float(((stream @ W_E.T).argmax(-1) == ids)[1:].float().mean()))
    chance = 1 / s.model.cfg.d_vocab
    t.say("the input token is still the nearest row of W_E to the stream entering layer "
          + ", ".join(f"{i}: {found[i]:.0%}" for i in range(0, L, max(1, L // 6))) + f" of positions (chance {chance:.0e})")
    after0 = cache["blocks.1.resid_pre"][0] if L > 1 else e
    keep = float(F.cosine_similarity(last, after0, dim=-1)[1:].mean())
    t.say(f"the stream leaving block 0 vs the final stream: cosine {keep:.2f} (vs {cos:.2f} for the raw embedding)")
    if min(found[1:] or [1.0]) > 10 * chance:
        t.say("→ the token's own identity stays readable in the stream through every layer")
    else:
        t.say("→ after block 0 the input token is no longer the nearest embedding row: what the later layers keep "
              "and add to is block 0's rewrite of the token, not its raw embedding (this read-out is a cosine, "
              "not a trained probe)")
    t.figure(curves_figure({"|layer's update| / |stream|": (list(range(L)), ratio),
                            "input token = nearest W_E row (share)": (list(range(L)), found)}, "layer",
                           "ratio (median over tokens) / share", "SmolLM2: the residual stream, layer by layer (T7)"),
             "t7_residual.png")
    return {"sum_diff": diff, "update_ratio": ratio, "cosine_with_embedding": cos, "token_found": found,
            "chance": chance, "cosine_with_block0": keep}


def t8(t: Tour) -> dict:
    """The attention matrix is n×n: the scores QKᵀ, scaled, masked and softmaxed, become the weights."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    n = min(4, s.model.cfg.n_layers - 1)
    scores, pattern = attention_scores(s.model, ids, n)[0], attention_patterns(s.model, ids, n)[0]
    labels = token_labels(s.tokenizer, ids.tolist())
    T = len(ids)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    by_hand = torch.softmax(scores.float().masked_fill(future, -math.inf), -1)  # mask, then softmax, row by row
    diff = max_diff(by_hand, pattern)
    t.say(f"{T} tokens: scores {tuple(scores.shape[1:])} and pattern {tuple(pattern.shape[1:])} per head")
    t.say(f"softmax(mask(scores)) by hand vs the model's pattern: max difference {diff:.1e}; the scores above the "
          f"diagonal (the future) reach {float(scores.float()[:, future].abs().max()):.2f}, the pattern there "
          f"{float(pattern.float()[:, future].abs().max()):.1e}; every row of the pattern sums to 1 "
          f"(max error {float((pattern.float().sum(-1) - 1).abs().max()):.1e})")
    t.figure(attention_heatmap(scores[0], labels, f"layer {n} head 0: scores before mask and softmax", scores=True),
             "t8_scores.png")
    t.figure(attention_heatmap(pattern[0], labels, f"layer {n} head 0: pattern"), "t8_pattern.png")
    return {"scores": list(scores.shape), "pattern": list(pattern.shape), "softmax_by_hand_diff": diff,
            "future_scores": float(scores.float()[:, future].abs().max()),
            "future_pattern": float(pattern.float()[:, future].abs().max())}
