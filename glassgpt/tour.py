"""`glassgpt tour`: the seed's claims G1–G12 and T1–T16, one stop each, shown on real models.

Each stop is a function `stop(tour) -> dict` that prints what it shows and returns the
numbers that show it (the "facts"); the tests run the same stops and check those numbers.
Where pretrained knowledge matters the stop uses SmolLM2 (`tour.smol()`); where training is
the point it uses a small character model trained for about a minute on Tiny Shakespeare
(`tour.toy()`), recording Q/K as it trains. Figures go to the --out folder, all facts to
tour.json.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import ContextLengthError, GlassError
from .io import write_json
from .model import GPT, Block, LearnedQueries, softmax_with_temperature

PROMPT = "The capital of France is Paris. The capital of Italy is"
SENTENCE = "The cat sat on the mat because it was tired."


@dataclass
class Toy:
    """A model trained for a minute, with its untrained twin (same seed, same initial weights)."""

    model: GPT
    untrained: GPT
    tokenizer: object
    run_dir: Path
    metrics: list[dict]  # metrics.jsonl: per step {"loss"} and per evaluation {"val_loss"}
    qk: list[dict]  # qk.jsonl
    text_sample: str  # the start of the validation text (for probes)
    train_text: str  # the start of the training text (at most 200,000 tokens)
    unigram_entropy: float  # of the training tokens: the loss of a model that knows only their frequencies


@dataclass
class Tour:
    out: Path
    smol_spec: str | None = None
    data: str | None = None  # a text file or a recipe; default Tiny Shakespeare (shipped in the package)
    seconds: float = 60.0
    log: Callable[[str], None] = print
    _smol: object = None
    _toy: Toy | None = None
    facts: dict = field(default_factory=dict)

    def smol(self):
        if self._smol is None:
            from .load import load_model

            t0 = time.perf_counter()
            self._smol = load_model(self.smol_spec)
            self._smol.model.eval()
            self.log(f"  (loaded {Path(self._smol.source).name} in {time.perf_counter() - t0:.0f} s)")
        return self._smol

    def toy(self) -> Toy:
        if self._toy is None:
            with torch.enable_grad():
                self._toy = train_toy(self.out / "toy-run", self.data or default_data(), self.seconds, self.log)
        return self._toy

    def say(self, text: str = "") -> None:
        self.log("  " + text.replace("\n", "\n  "))

    def figure(self, fig, name: str) -> str:
        from .inspect.plots import save

        path = save(fig, self.out / name)
        self.say(f"figure: {path}")
        return str(path)

    def ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.smol().tokenizer.encode(text), dtype=torch.long)


def default_data() -> str:
    return "tinyshakespeare"  # shipped inside the package (glassgpt/corpora)


def train_toy(run_dir: Path, data: str, seconds: float, log=print, **overrides) -> Toy:
    """A 4-layer character model trained for `seconds` (or max_steps) with Q/K tracked every 25 steps."""
    import json

    import numpy as np

    from .inspect.qk import read_records
    from .train import TrainConfig, train

    settings = dict(data=data, tokenizer="char", n_layers=4, n_heads=4, d_model=128, n_ctx=64, batch_size=16,
                    max_steps=600, warmup_steps=20, lr=3e-3, eval_every=50, eval_batches=4, max_seconds=seconds,
                    checkpoint_every=10_000, keep_checkpoints=1, track_qk=25, progress=False, sample_tokens=0,
                    out_dir=str(run_dir), seed=1337)
    settings.update(overrides)
    cfg = TrainConfig(**settings)
    log(f"  (training a {cfg.n_layers}-layer character model for up to {seconds:.0f} s → {run_dir})")
    run = train(cfg, log=lambda m: None)
    torch.manual_seed(cfg.seed)  # the run's own initialisation, replayed
    untrained = GPT(run.model_cfg).eval()
    metrics = [json.loads(x) for x in (run.out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val, train_ids = run.data.val, np.asarray(run.data.train)
    sample = run.tokenizer.decode([int(i) for i in val[:2000]])
    counts = torch.from_numpy(np.bincount(train_ids.astype(np.int64))).double()
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * p.log()).sum())
    train_text = run.tokenizer.decode([int(i) for i in train_ids[:200_000]])
    return Toy(run.model.eval(), untrained, run.tokenizer, run.out, metrics, read_records(run.out), sample,
               train_text, unigram)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _label(tok, i: int) -> str:
    return repr(tok.decode([int(i)]))


# ============================================================================= G: GPT and the Transformer


def g1(t: Tour) -> dict:
    """GPT = Generative + Pre-trained + Transformer."""
    from .generate import SampleConfig, generate

    s = t.smol()
    text = generate(s.model, s.tokenizer, "Once upon a time", SampleConfig(max_new_tokens=20, temperature=0))
    t.say(f"pre-trained SmolLM2, greedy: 'Once upon a time{text}'")
    toy = t.toy()
    losses = [m["val_loss"] for m in toy.metrics if "val_loss" in m]
    start = toy.text_sample.find("\n\n") + 2  # a speaker's name, as a play continues
    prompt = toy.text_sample[start:toy.text_sample.find("\n", start) + 1] or toy.text_sample[:20]
    sample = generate(toy.model, toy.tokenizer, prompt, SampleConfig(max_new_tokens=80, temperature=0.8, seed=0))
    t.say(f"pre-trained here from scratch (validation loss {losses[0]:.2f} → {losses[-1]:.2f}):\n"
          f"{prompt}{sample}")
    return {"val_loss_start": losses[0], "val_loss_end": losses[-1]}


def g2(t: Tour) -> dict:
    """Embedding → (Attention → MLP) × N → Unembedding."""
    from .describe import describe

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
        _, cache2 = s.model.run_with_cache(changed, names="blocks.0.attn.out")
    mlp_diff = _max_diff(alone, cache["blocks.0.mlp.out"][0, i])
    attn_change = _max_diff(cache2["blocks.0.attn.out"][0, i], cache["blocks.0.attn.out"][0, i])
    t.say(f"token {_label(s.tokenizer, ids[i])} → a vector of {cache['embed'].shape[-1]} numbers")
    t.say(f"its MLP output computed alone vs inside the sentence: max difference {mlp_diff:.1e} (per token)")
    t.say(f"change the first word: its attention output moves by up to {attn_change:.3f} (context)")
    return {"mlp_alone_diff": mlp_diff, "attn_context_change": attn_change}


def g4(t: Tour) -> dict:
    """Shallow layers attend locally, deep layers globally (measured: mean attention distance per layer)."""
    from .inspect.heads import head_scores
    from .inspect.plots import distance_by_layer_figure

    s = t.smol()
    text = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
            "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
            "And God said, Let there be light: and there was light.")
    scores = head_scores(s.model, t.ids(text)[: s.model.cfg.n_ctx], bos=s.tokenizer.bos_id)
    d = scores.distance.mean(-1)
    L = len(d)
    third = max(1, L // 3)
    early, late = float(d[:third].mean()), float(d[-third:].mean())
    t.say("mean attention distance by layer: " + " ".join(f"{x:.0f}" for x in d.tolist()))
    t.say(f"first third of the layers: {early:.1f} tokens back; last third: {late:.1f}")
    t.figure(distance_by_layer_figure(scores.distance, "SmolLM2: mean attention distance by layer (G4)"),
             "g4_distance.png")
    return {"distance_early": early, "distance_late": late}


def g5(t: Tour) -> dict:
    """MLP = up-projection → non-linearity → down-projection."""
    s = t.smol()
    cfg = s.model.cfg
    layer = min(5, cfg.n_layers - 1)
    _, cache = s.model.run_with_cache(t.ids(SENTENCE), names=[f"blocks.{layer}.mlp.post"])
    post = cache[f"blocks.{layer}.mlp.post"][0]
    small = float((post.abs() < 0.1 * post.abs().mean()).float().mean())
    t.say(f"d_model {cfg.d_model} → d_mlp {cfg.d_mlp} (×{cfg.d_mlp / cfg.d_model:.2f}) → d_model; "
          f"{cfg.mlp} non-linearity")
    t.say(f"layer {layer}: {small:.0%} of the hidden units are near zero (< 0.1 × mean |activation|)")
    return {"ratio": cfg.d_mlp / cfg.d_model, "near_zero_fraction": small}


def g6(t: Tour) -> dict:
    """Each layer builds on the last (the logit lens: the best guess at each layer)."""
    from .inspect.common import token_labels
    from .inspect.lens import logit_lens
    from .inspect.plots import lens_figure

    s = t.smol()
    ids = t.ids(PROMPT)
    lens = logit_lens(s.model, ids, k=3)
    tops = [s.tokenizer.decode([int(i)]) for i in lens.top_ids[:, -1, 0]]
    final = tops[-1]
    first = next(i for i in range(len(tops)) if all(x == final for x in tops[i:]))
    for i in list(range(0, len(tops) - 1, max(1, len(tops) // 10))):
        t.say(f"{lens.layer_names[i]:>10}: {tops[i]!r} {float(lens.top_probs[i, -1, 0]):.2f}")
    t.say(f"{lens.layer_names[-1]:>10}: {final!r} {float(lens.top_probs[-1, -1, 0]):.2f}")
    t.say(f"'{PROMPT}' → {final!r}, the top guess from {lens.layer_names[first]} on")
    t.figure(lens_figure(lens, s.tokenizer, token_labels(s.tokenizer, ids.tolist()), "SmolLM2 logit lens (G6)"),
             "g6_lens.png")
    return {"final": final, "settles_at": first}


def g7(t: Tour) -> dict:
    """Stacking approximates the next-token distribution: the loss falls below simple statistics of the data."""
    from .inspect.plots import curves_figure

    toy = t.toy()
    unigram = toy.unigram_entropy
    uniform = math.log(toy.tokenizer.vocab_size)
    evals = [(m["step"], m["val_loss"]) for m in toy.metrics if "val_loss" in m]
    t.say(f"uniform guess ln({toy.tokenizer.vocab_size}) = {uniform:.2f}; letter frequencies alone "
          f"(unigram entropy) = {unigram:.2f}")
    t.say(f"validation loss: {evals[0][1]:.2f} at step 0 → {evals[-1][1]:.2f} at step {evals[-1][0]}")
    xs, ys = zip(*evals)
    fig = curves_figure({"validation loss": (list(xs), list(ys)),
                         f"ln V = {uniform:.2f}": ([xs[0], xs[-1]], [uniform, uniform]),
                         f"unigram entropy {unigram:.2f}": ([xs[0], xs[-1]], [unigram, unigram])},
                        "step", "nats per character", "the toy model's loss (G7)")
    t.figure(fig, "g7_loss.png")
    return {"uniform": uniform, "unigram": unigram, "val_loss_end": evals[-1][1], "val_loss_start": evals[0][1]}


def g8(t: Tour) -> dict:
    """The core unit is the Transformer block = self-attention + MLP."""
    s = t.smol()
    n = min(3, s.model.cfg.n_layers - 1)
    block = s.model.blocks[n]
    _, cache = s.model.run_with_cache(t.ids(SENTENCE), names=[f"blocks.{n}.resid_pre", f"blocks.{n}.resid_post"])
    x = cache[f"blocks.{n}.resid_pre"]
    positions = torch.arange(x.shape[1]).unsqueeze(0)  # (1, T), for RoPE
    with torch.no_grad():
        x = x + block.attn(block.ln1(x), positions=positions)  # the block's two lines, by hand
        x = x + block.mlp(block.ln2(x))
    diff = _max_diff(x, cache[f"blocks.{n}.resid_post"])
    t.say(f"x = x + attn(ln1(x)); x = x + mlp(ln2(x))  — recomputed by hand for block {n}: "
          f"max difference {diff:.1e}")
    return {"block_by_hand_diff": diff}


def g9(t: Tour) -> dict:
    """Embedding directions carry meaning: cats − cat ≈ plural, woman − man ≈ female."""
    from .inspect import embed
    from .inspect.plots import alignment_figure, projection_figure

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
        r = embed.pair_alignment(m, tok, pairs)
        t.say(f"{name}: pairs' differences align with cosine {r['mean_cosine']:.2f}; random pairs "
              f"{r['baseline_mean']:.2f} ± {r['baseline_std']:.2f} (z = {r['z']:.1f})")
        facts[f"{name}_z"] = r["z"]
        t.figure(alignment_figure(r, title=f"SmolLM2 W_E: {name} pairs vs random pairs (G9)"), f"g9_{name}.png")
    d = embed.direction(m, tok, female[:4])
    words = ["actor", "actress", "prince", "princess", "nephew", "niece", "waiter", "waitress", "table", "river"]
    values = embed.project(m, tok, words, d)
    t.say("along the female direction: " + ", ".join(f"{w} {v:.2f}" for w, v in sorted(values, key=lambda x: x[1])))
    t.figure(projection_figure(values, "SmolLM2 W_E along mean(woman − man, queen − king, …)"), "g9_projection.png")
    facts["projection"] = dict(values)
    return facts


def g10(t: Tour) -> dict:
    """The system prompt is the initial context; the user's first question is the first turn."""
    from .chat import render

    s = t.smol()
    if not s.chat_template:
        t.say("this model has no chat template")
        return {}
    system, question = "You are a terse assistant.", "What is attention?"
    text = render(s.chat_template, [{"role": "system", "content": system}, {"role": "user", "content": question}])
    t.say(text)
    ids = s.tokenizer.encode(text)
    return {"system_first": text.index(system) < text.index(question), "context_tokens": len(ids)}


def g11(t: Tour) -> dict:
    """What flows through attention is bounded by the context length."""
    m = t.smol().model
    n = m.cfg.n_ctx
    try:
        m.check_tokens(torch.zeros(1, n + 1, dtype=torch.long))
        message = ""
    except ContextLengthError as e:
        message = str(e)
    t.say(f"context window n_ctx = {n}; the attention pattern is at most {n} × {n}")
    t.say(f"{n + 1} tokens: {message}")
    return {"n_ctx": n, "error": message}


def g12(t: Tour) -> dict:
    """Logits → softmax → probabilities; temperature divides the logits: e^(x/T) / Σ e^(x/T)."""
    from .inspect.plots import temperature_figure

    s = t.smol()
    with torch.no_grad():
        logits = s.model(t.ids(PROMPT).unsqueeze(0))[0, -1].float()
    top = logits.topk(8).indices
    labels = [s.tokenizer.decode([int(i)]) for i in top]
    probs, entropy, by_hand_diff = {}, {}, 0.0
    for T in (0.2, 1.0, 2.0):
        p = softmax_with_temperature(logits, T)
        by_hand = torch.exp((logits - logits.max()) / T) / torch.exp((logits - logits.max()) / T).sum()
        by_hand_diff = max(by_hand_diff, _max_diff(p, by_hand))
        probs[T] = p[top]
        entropy[T] = float(-(p * p.clamp_min(1e-30).log()).sum())
        t.say(f"T = {T:<4g} " + ", ".join(f"{w!r} {float(q):.3f}" for w, q in zip(labels[:4], p[top][:4]))
              + f"  (entropy {entropy[T]:.2f} nats)")
    t.say(f"softmax_with_temperature vs e^(x/T)/Σe^(x/T) by hand: max difference {by_hand_diff:.1e}")
    t.figure(temperature_figure(probs, labels, f"next token after '…{PROMPT[-20:]}' (G12)"), "g12_temperature.png")
    return {"top_prob": {T: float(p[0]) for T, p in probs.items()}, "entropy": entropy, "by_hand_diff": by_hand_diff}


# ============================================================================= T: attention


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
    diff = max(_max_diff(weights, cache[f"blocks.{n}.attn.pattern"][0]), _max_diff(out, z))
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
    diff = _max_diff(fused, explicit)
    t.say(f"fused kernel vs explicit softmax(QKᵀ/√d_k)·V: max logit difference {diff:.1e}")
    t.say(f"for random unit-variance q, k with d_k = {d}: std of q·k = {float(raw.std()):.1f}, "
          f"of q·k/√d_k = {float((raw / math.sqrt(d)).std()):.2f}")
    return {"fused_vs_explicit": diff, "std_raw": float(raw.std()), "std_scaled": float((raw / math.sqrt(d)).std())}


def t4(t: Tour) -> dict:
    """Q/K similarity rests on the embeddings' meaning: attention of an untrained vs a trained model."""
    from .inspect.attention import attention_patterns
    from .inspect.common import token_labels
    from .inspect.heads import mean_entropy
    from .inspect.plots import attention_grid

    toy = t.toy()
    ids = torch.tensor(toy.tokenizer.encode(toy.text_sample[:48]))[: toy.model.cfg.n_ctx]
    facts = {}
    for name, model in (("untrained", toy.untrained), ("trained", toy.model)):
        p = attention_patterns(model, ids)
        facts[name] = float(mean_entropy(p).mean())
        t.figure(attention_grid(p[-1], token_labels(toy.tokenizer, ids.tolist()), f"{name}: last layer"),
                 f"t4_{name}.png")
    uniform = float(sum(math.log(i + 1) for i in range(1, len(ids))) / (len(ids) - 1))
    t.say(f"mean attention entropy: untrained {facts['untrained']:.2f}, trained {facts['trained']:.2f} nats "
          f"(uniform attention: {uniform:.2f})")
    facts["uniform"] = uniform
    return facts


def t5(t: Tour) -> dict:
    """Self-attention, cross-attention, multi-head, and fixed learned queries."""
    from .config import ModelConfig

    cfg = ModelConfig(d_vocab=50, n_ctx=16, d_model=32, n_layers=1, n_heads=4)
    x, src = torch.randn(1, 6, 32), torch.randn(1, 9, 32)
    shapes = {}
    block = Block(cfg, cross=True).eval()
    for module in (block.attn, block.cross_attn):
        module.hook_pattern.fns.append(lambda p, name, key=module: shapes.__setitem__(id(key), tuple(p.shape)))
    for p in block.parameters():
        if p.dim() == 2:  # the W_* matrices (norm gains and biases are already 1 and 0)
            torch.nn.init.normal_(p, std=0.02)
    with torch.no_grad():
        block(x, context=src)
    self_shape, cross_shape = shapes[id(block.attn)], shapes[id(block.cross_attn)]
    lq = LearnedQueries(cfg, n_queries=3).eval()
    seen = {}
    lq.attn.hook_pattern.fns.append(lambda p, name: seen.__setitem__("p", tuple(p.shape)))
    with torch.no_grad():
        pooled = lq(src)
    t.say(f"self-attention (queries and keys from the same 6 tokens): pattern {self_shape}")
    t.say(f"cross-attention (6 queries over 9 source tokens): pattern {cross_shape}")
    t.say(f"multi-head: {cfg.n_heads} heads of d_head {cfg.d_head}, one pattern each (the H dimension)")
    t.say(f"learned queries (3 fixed questions over 9 tokens): pattern {seen['p']}, output {tuple(pooled.shape)}")
    return {"self": list(self_shape), "cross": list(cross_shape), "learned": list(seen["p"])}


def t6(t: Tour) -> dict:
    """Causal mask: later tokens cannot affect earlier ones."""
    s = t.smol()
    ids = t.ids(SENTENCE)
    i = len(ids) // 2
    changed = ids.clone()
    changed[i] = (int(ids[i]) + 1000) % s.model.cfg.d_vocab
    with torch.no_grad():
        a, b = s.model(ids.unsqueeze(0))[0], s.model(changed.unsqueeze(0))[0]
    before, after = _max_diff(a[:i], b[:i]), _max_diff(a[i:], b[i:])
    t.say(f"token {i} changed: logits at positions 0..{i - 1} move by {before:.1e}, at {i}..{len(ids) - 1} by {after:.2f}")
    return {"earlier_change": before, "later_change": after}


def t7(t: Tour) -> dict:
    """Residual connections keep low-level information: each layer adds to the stream instead of replacing it."""
    from .inspect.plots import curves_figure

    s = t.smol()
    L = s.model.cfg.n_layers
    names = ["embed"] + [f"blocks.{i}.{n}" for i in range(L) for n in ("resid_pre", "attn.out", "mlp.out")]
    _, cache = s.model.run_with_cache(t.ids(SENTENCE), names=names + [f"blocks.{L - 1}.resid_post"])
    total = cache["embed"][0] + sum(cache[f"blocks.{i}.attn.out"][0] + cache[f"blocks.{i}.mlp.out"][0] for i in range(L))
    diff = _max_diff(total, cache[f"blocks.{L - 1}.resid_post"][0]) / float(total.abs().max())
    ratio = []
    for i in range(L):  # the size of what layer i writes, relative to the stream it reads (positions ≥ 1)
        write = cache[f"blocks.{i}.attn.out"][0] + cache[f"blocks.{i}.mlp.out"][0]
        ratio.append(float((write.norm(dim=-1) / cache[f"blocks.{i}.resid_pre"][0].norm(dim=-1))[1:].median()))
    e, last = cache["embed"][0], cache[f"blocks.{L - 1}.resid_post"][0]
    cos = float(F.cosine_similarity(last, e, dim=-1)[1:].mean())
    t.say(f"final stream = embedding + Σ every layer's attention and MLP output (relative difference {diff:.1e})")
    t.say("size of each layer's update / size of the stream it reads: " + " ".join(f"{r:.2f}" for r in ratio[::3]))
    t.say(f"(SmolLM2's block 0 rewrites the raw embedding: the final stream's cosine with it is {cos:.2f})")
    t.figure(curves_figure({"|layer's update| / |stream|": (list(range(L)), ratio)}, "layer", "ratio (median over tokens)",
                           "SmolLM2: each layer adds a correction to the residual stream (T7)"), "t7_residual.png")
    return {"sum_diff": diff, "update_ratio": ratio, "cosine_with_embedding": cos}


def t8(t: Tour) -> dict:
    """The attention matrix is n×n: the scores QKᵀ, scaled, masked and softmaxed, become the weights."""
    from .inspect.attention import attention_patterns, attention_scores
    from .inspect.common import token_labels
    from .inspect.plots import attention_heatmap

    s = t.smol()
    ids = t.ids(SENTENCE)
    n = min(4, s.model.cfg.n_layers - 1)
    scores, pattern = attention_scores(s.model, ids, n)[0], attention_patterns(s.model, ids, n)[0]
    labels = token_labels(s.tokenizer, ids.tolist())
    t.say(f"{len(ids)} tokens: scores {tuple(scores.shape[1:])} and pattern {tuple(pattern.shape[1:])} per head")
    t.figure(attention_heatmap(scores[0], labels, f"layer {n} head 0: scores before mask and softmax", scores=True),
             "t8_scores.png")
    t.figure(attention_heatmap(pattern[0], labels, f"layer {n} head 0: pattern"), "t8_pattern.png")
    return {"scores": list(scores.shape), "pattern": list(pattern.shape)}


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
    diff = _max_diff(q, cache["blocks.0.attn.q"])
    t.say(f"W_Q: a parameter {tuple(attn.W_Q.shape)}; q: an activation {tuple(cache['blocks.0.attn.q'].shape)}")
    t.say(f"q = norm(x)·W_Q (then RoPE), by hand: max difference {diff:.1e}")
    return {"q_by_hand_diff": diff}


def t10(t: Tour) -> dict:
    """The value map: down (W_V) → weighted sum → up (W_O) equals one matrix W_V·W_O applied after the sum."""
    s = t.smol()
    m = s.model
    attn, h = m.blocks[1].attn, min(4, m.cfg.n_heads - 1)
    ids = t.ids(SENTENCE)
    _, cache = m.run_with_cache(ids, names=["blocks.1.resid_pre", "blocks.1.attn.pattern"])
    w = attn.head_weights(h)
    with torch.no_grad():
        x = m.blocks[1].ln1(cache["blocks.1.resid_pre"])[0]  # (T, d_model)
        p = cache["blocks.1.attn.pattern"][0, h]  # (T, T)
        staged = (p @ (x @ w["W_V"])) @ w["W_O"]  # down → weighted sum → up
        single = p @ (x @ attn.W_OV(h))  # one d_model × d_model value matrix
    diff = _max_diff(staged, single)
    D, d = m.cfg.d_model, m.cfg.d_head
    t.say(f"layer 1 head {h}: down→sum→up vs one matrix W_OV: max difference {diff:.1e}")
    t.say(f"parameters: W_V + W_O slices {2 * D * d:,} vs a full value matrix {D * D:,}; rank ≤ {d}")
    return {"value_map_diff": diff, "rank": int(torch.linalg.matrix_rank(w["W_V"].double() @ w["W_O"].double()))}


def t11(t: Tour) -> dict:
    """The weights are learned self-supervised, by predicting the next token."""
    toy = t.toy()
    steps = [m for m in toy.metrics if "loss" in m]
    first = sum(m["loss"] for m in steps[:10]) / min(10, len(steps))
    last = sum(m["loss"] for m in steps[-10:]) / min(10, len(steps))
    t.say(f"target = the input shifted by one; training loss {first:.2f} (first 10 steps) → {last:.2f} "
          f"(last 10) over {steps[-1]['step']} steps")
    return {"train_loss_start": first, "train_loss_end": last, "steps": steps[-1]["step"]}


def t12(t: Tour) -> dict:
    """Each token asks 'whose information do I need?', weighs each answer, and re-reads itself in context."""
    from .inspect.attention import attention_patterns

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
    """One head models one kind of relation; several heads model several in parallel (equal size)."""
    from .inspect.multihead import train_heads

    from .data import load_corpus

    text = load_corpus(t.data or default_data()).text[:200_000]
    steps = max(30, int(t.seconds * 2))
    results = {}
    for H in (1, 4, 8):
        with torch.enable_grad():
            r = train_heads(text, H, steps, d_model=64, n_layers=2, n_ctx=64)
        results[H] = r.val_loss
        t.say(f"{H} head(s): {r.parameters:,} parameters, {steps} steps → validation loss {r.val_loss:.3f}")
    t.say("(benchmarks/heads.py runs the longer version)")
    return {"val_loss": results}


def t14(t: Tour) -> dict:
    """Q, K, V start random and specialise through gradient descent (tracked during training)."""
    from .inspect.qk import qk_figure

    toy = t.toy()
    first, last = toy.qk[0], toy.qk[-1]

    def mean(r, key):
        return sum(sum(row) for row in r[key]) / sum(len(row) for row in r[key])

    facts = {}
    for key in ("norm_Q", "norm_K", "qk_cosine", "principal_cos", "entropy", "prev_token"):
        facts[key] = (mean(first, key), mean(last, key))
        t.say(f"{key:>14}: step {first['step']:>4} {facts[key][0]:7.3f} → step {last['step']:>4} {facts[key][1]:7.3f}")
    t.figure(qk_figure(toy.qk), "t14_qk.png")
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
    """∂loss/∂Q is made of K (and ∂loss/∂K of Q): the hand-derived gradient equals autograd's."""
    from .inspect.grad import attention_backward, attention_forward

    toy = t.toy()
    model = copy.deepcopy(toy.model).double()
    ids = torch.tensor(toy.tokenizer.encode(toy.text_sample[: toy.model.cfg.n_ctx + 1])).unsqueeze(0)
    saved = {}

    def keep(x, name):
        x.retain_grad()
        saved[name] = x

    names = [f"blocks.1.attn.{n}" for n in "qkvz"]
    with torch.enable_grad(), model.hooks({n: keep for n in names}):
        logits = model(ids[:, :-1])
        F.cross_entropy(logits[0], ids[0, 1:]).backward()
    q, k, v, z = (saved[n] for n in names)
    _, P = attention_forward(q.detach(), k.detach(), v.detach())
    dQ, dK, _ = attention_backward(z.grad, q.detach(), k.detach(), v.detach(), P)
    diff = max(_max_diff(dQ, q.grad), _max_diff(dK, k.grad))
    first, last = toy.qk[0], toy.qk[-1]
    pc = [sum(map(sum, r["principal_cos"])) / sum(map(len, r["principal_cos"])) for r in (first, last)]
    t.say(f"dQ = dS·K/√d_k, dK = dSᵀ·Q/√d_k vs autograd, layer 1 of the toy: max difference {diff:.1e}")
    t.say(f"W_Q/W_K subspace overlap (mean cos of principal angles): {pc[0]:.3f} at step {first['step']} → "
          f"{pc[1]:.3f} at step {last['step']}")
    return {"grad_diff": diff, "principal_cos": pc}


STOPS: list[tuple[str, Callable[[Tour], dict]]] = [
    ("G1", g1), ("G2", g2), ("G3", g3), ("G4", g4), ("G5", g5), ("G6", g6), ("G7", g7), ("G8", g8), ("G9", g9),
    ("G10", g10), ("G11", g11), ("G12", g12),
    ("T1", t1), ("T2", t2), ("T3", t3), ("T4", t4), ("T5", t5), ("T6", t6), ("T7", t7), ("T8", t8), ("T9", t9),
    ("T10", t10), ("T11", t11), ("T12", t12), ("T13", t13), ("T14", t14), ("T15", t15), ("T16", t16),
]


def select_stops(only: list[str] | None) -> list[tuple[str, Callable[[Tour], dict]]]:
    if not only:
        return STOPS
    known = {sid for sid, _ in STOPS}
    wanted = [s.strip().upper() for item in only for s in item.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise GlassError(f"unknown stop(s) {', '.join(unknown)}: the tour has G1–G12 and T1–T16")
    return [(sid, fn) for sid, fn in STOPS if sid in wanted]


def run_tour(tour: Tour, only: list[str] | None = None) -> dict:
    stops = select_stops(only)
    tour.out.mkdir(parents=True, exist_ok=True)
    for sid, fn in stops:
        claim = (fn.__doc__ or "").strip().splitlines()[0]
        tour.log(f"\n{sid}  {claim}")
        t0 = time.perf_counter()
        with torch.no_grad():  # stops that train turn gradients back on themselves
            tour.facts[sid] = _jsonable(fn(tour))
        tour.facts[sid]["seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tour.out / "tour.json", tour.facts)
    return tour.facts


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    return x
