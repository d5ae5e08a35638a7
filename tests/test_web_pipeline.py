"""The Pipeline route: one token through one layer and head, every number equal to `run_with_cache`.

Checked on three kinds of model: an untrained GPT-2 style BPE model, a character model trained
here for a fixed number of steps, and a Llama-style model (RoPE, RMSNorm, SwiGLU, grouped-query
attention); SmolLM2 itself in the slow suite.
"""

from __future__ import annotations

import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.generate import SampleConfig, Sampler, generate_ids
from glassgpt.load import Loaded
from glassgpt.model import GPT
from glassgpt.tokenizer import CharTokenizer
from glassgpt.web import create_app
from test_web_api import PROMPT, local, tiny_loaded

CHAR_TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog sat on a mat. "
             "猫坐在垫子上。狗坐在木头上。") * 8
CHAR_PROMPT = "the dog sat on the m"


def trained_char_loaded(steps: int = 150, seed: int = 0) -> tuple[Loaded, float, float]:
    """A 2-layer character model trained on CHAR_TEXT for a fixed number of steps (a second or two on one
    thread). Returns (model, loss before, loss after)."""
    tok = CharTokenizer.from_text(CHAR_TEXT)
    torch.manual_seed(seed)
    cfg = ModelConfig(d_vocab=tok.vocab_size, n_ctx=64, d_model=48, n_layers=2, n_heads=4, name="char")
    model = GPT(cfg)
    data = torch.tensor(tok.encode(CHAR_TEXT))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 33, (16,), generator=g)
        x = torch.stack([data[s:s + 32] for s in starts])
        y = torch.stack([data[s + 1:s + 33] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return Loaded(model, tok, "memory", "run", stop_ids=[]), losses[0], sum(losses[-10:]) / 10


def llama_loaded() -> Loaded:
    """A tiny Llama-style model: RoPE, RMSNorm, SwiGLU, 4 query heads sharing 2 key/value heads."""
    tok = tiny_loaded().tokenizer
    torch.manual_seed(1)
    cfg = ModelConfig(d_vocab=tok.vocab_size, n_ctx=128, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                      positions="rope", norm="rmsnorm", mlp="swiglu", attn_bias=False, mlp_bias=False,
                      tie_embeddings=False, name="llama")
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return Loaded(model, tok, "memory", "run", stop_ids=[])


@pytest.fixture(scope="module")
def char_model(one_thread):
    loaded, before, after = trained_char_loaded()
    assert after < 0.5 * before, (before, after)  # it learned: the pipeline below reads a trained model
    return loaded


def close(got, want, what):
    got = torch.tensor(got, dtype=torch.float64)
    torch.testing.assert_close(got, want.double(), rtol=1e-4, atol=2e-5, msg=lambda m: f"{what}: {m}")


def check_pipeline(loaded: Loaded, prompt: str, position: int, layer: int, head: int, client=None) -> dict:
    """Ask the route, then compare every stage with run_with_cache on the whole prompt."""
    client = client or local(create_app(loaded, include_default=False))
    body = {"prompt": prompt, "position": position, "layer": layer, "head": head, "temperature": 0.8,
            "top_k": 20, "seed": 7}
    r = client.post("/api/pipeline", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    model, cfg = loaded.model, loaded.model.cfg
    ids = loaded.tokenizer.encode(prompt)
    T, p, L, h = len(ids), position, layer, head
    kv = h // (cfg.n_heads // cfg.n_kv_heads)
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.tensor([ids]))
    assert out["token"]["id"] == ids[p] and out["n_tokens"] == T and out["kv_head"] == kv
    close(out["embed"]["W_E_row"]["values"], model.embed.W_E[ids[p]], "W_E row")
    close(out["embed"]["x"]["values"], cache["embed"][0, p], "embedding")
    if cfg.positions == "learned":
        close(out["embed"]["W_pos_row"]["values"], model.embed.W_pos[p], "W_pos row")
    else:
        assert out["embed"]["W_pos_row"] is None
    close(out["resid_pre"]["values"], cache[f"blocks.{L}.resid_pre"][0, p], "resid_pre")
    close(out["q"]["values"], cache[f"blocks.{L}.attn.q"][0, h, p], "q")
    close(out["k"]["values"], cache[f"blocks.{L}.attn.k"][0, kv, p], "k")
    close(out["v"]["values"], cache[f"blocks.{L}.attn.v"][0, kv, p], "v")
    scores = out["scores"]
    assert len(scores) == T
    assert all(s is None for s in scores[p + 1:])  # masked: −∞, sent as null
    assert all(s is not None for s in scores[:p + 1])
    close(scores[:p + 1], cache[f"blocks.{L}.attn.scores"][0, h, p, :p + 1], "scores")
    close(out["pattern"], cache[f"blocks.{L}.attn.pattern"][0, h, p], "pattern")
    assert sum(out["pattern"]) == pytest.approx(1.0, abs=1e-5)
    close(out["z"]["values"], cache[f"blocks.{L}.attn.z"][0, h, p], "z")
    close(out["attn_out"]["values"], cache[f"blocks.{L}.attn.out"][0, p], "attn out")
    close(out["resid_mid"]["values"], cache[f"blocks.{L}.resid_mid"][0, p], "resid_mid")
    close(out["mlp"]["pre"]["values"], cache[f"blocks.{L}.mlp.pre"][0, p], "mlp pre")
    close(out["mlp"]["post"]["values"], cache[f"blocks.{L}.mlp.post"][0, p], "mlp post")
    close(out["resid_post"]["values"], cache[f"blocks.{L}.resid_post"][0, p], "resid_post")
    close(out["final_norm"]["values"], cache["final_norm"][0, p], "final norm")
    want_top = logits[0, p].topk(len(out["logits"]))
    assert [t["id"] for t in out["logits"]] == want_top.indices.tolist()
    close([t["logit"] for t in out["logits"]], want_top.values, "logits")
    cfg_s = SampleConfig(temperature=0.8, top_k=20, seed=7)
    assert out["sampled"]["id"] == int(Sampler(cfg_s).sample(logits[0, p:p + 1].float())[0])
    return out


def test_pipeline_equals_run_with_cache_gpt2_style():
    loaded = tiny_loaded()
    T = len(loaded.tokenizer.encode(PROMPT))
    client = local(create_app(loaded, include_default=False))
    for p, L, h in [(T - 1, 1, 1), (3, 0, 0), (0, 1, 0)]:
        check_pipeline(loaded, PROMPT, p, L, h, client)


def test_pipeline_equals_run_with_cache_on_a_trained_char_model(char_model):
    T = len(CHAR_PROMPT)
    out = check_pipeline(char_model, CHAR_PROMPT, T - 1, 1, 2)
    assert out["sampled"]["text"] in "abcdefghijklmnopqrstuvwxyz .猫坐在垫子上。狗木头"
    # trained: after "the dog sat on the m" the model's best guess is "a" (mat)
    assert out["logits"][0]["text"] == "a"
    check_pipeline(char_model, "猫坐在垫子", 2, 0, 1)


def test_pipeline_equals_run_with_cache_llama_style():
    loaded = llama_loaded()
    T = len(loaded.tokenizer.encode(PROMPT))
    client = local(create_app(loaded, include_default=False))
    for p, L, h in [(T - 1, 1, 3), (2, 0, 1)]:
        check_pipeline(loaded, PROMPT, p, L, h, client)


def test_head_writes_sum_to_the_attention_output():
    loaded = llama_loaded()
    client = local(create_app(loaded, include_default=False))
    outs = [client.post("/api/pipeline", json={"prompt": PROMPT, "layer": 1, "head": h}).json()
            for h in range(4)]
    total = torch.tensor([o["head_write"]["values"] for o in outs]).sum(0)
    torch.testing.assert_close(total, torch.tensor(outs[0]["attn_out"]["values"]), rtol=1e-4, atol=1e-5)


def test_pipeline_limits_and_errors():
    loaded = tiny_loaded()
    client = local(create_app(loaded, include_default=False))
    T = len(loaded.tokenizer.encode(PROMPT))
    for body, words in [({"position": T}, "position"), ({"layer": 2}, "layer 2"), ({"head": 5}, "head 5"),
                        ({"position": -1}, "position")]:
        r = client.post("/api/pipeline", json={"prompt": PROMPT, **body})
        assert r.status_code == 422 and words in r.json()["error"], r.text
    from glassgpt.web import Limits

    capped = local(create_app(loaded, include_default=False, limits=Limits(max_analysis_tokens=4)))
    r = capped.post("/api/pipeline", json={"prompt": PROMPT})
    assert r.status_code == 422 and "at most 4" in r.json()["error"]


def test_step_draws_the_samplers_token_and_a_generations_first(char_model):
    client = local(create_app(char_model, include_default=False))
    ids = char_model.tokenizer.encode(CHAR_PROMPT)
    with torch.no_grad():
        logits = char_model.model(torch.tensor([ids]))[:, -1]
    drawn = set()
    for seed in range(12):
        settings = {"temperature": 1.5, "top_p": 0.95, "seed": seed}
        r = client.post("/api/step", json={"prompt": CHAR_PROMPT, **settings})
        assert r.status_code == 200, r.text
        got = r.json()["next"]["id"]
        cfg = SampleConfig(temperature=1.5, top_p=0.95, seed=seed, max_new_tokens=1)
        assert got == int(Sampler(cfg).sample(logits.float())[0])
        assert got == int(next(generate_ids(char_model.model, [ids], cfg))[0])  # Generate's first token too
        assert r.json()["text"] == CHAR_PROMPT + char_model.tokenizer.decode([got])
        drawn.add(got)
    assert len(drawn) > 1  # at T = 1.5 different seeds draw different tokens: the seed matters


@pytest.mark.slow
def test_pipeline_equals_run_with_cache_on_smollm2(one_thread):
    from glassgpt.load import load_model

    smol = load_model(None)
    prompt = "The capital of France is"
    T = len(smol.tokenizer.encode(prompt))
    client = local(create_app(smol, include_default=False))
    out = check_pipeline(smol, prompt, T - 1, 20, 5, client)
    assert out["arch"]["positions"] == "rope" and out["embed"]["W_pos_row"] is None
    assert out["logits"][0]["text"] == " Paris"
    check_pipeline(smol, prompt, 2, 0, 8, client)
