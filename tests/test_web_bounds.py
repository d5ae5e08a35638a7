"""The server's bounds (issue 16 item 5): Host check, heavy-request admission (429), the fair
model lock, per-route token caps, and — on SmolLM2, in a server process of its own — the
resident memory each maximal request adds, and that it comes back down afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from glassgpt.web import Limits, create_app
from glassgpt.web.schedule import FairLock
from test_web_api import PROMPT, free_port, local, tiny_loaded

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- Host


def test_only_requests_for_this_server_are_answered(capsys):
    app = create_app(tiny_loaded(), include_default=False)
    assert capsys.readouterr().err == ""  # loopback: no warning
    for host, status in [("localhost", 200), ("localhost:8000", 200), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
                         ("evil.example:8000", 421), ("127.0.0.1.nip.io", 421), ("", 421)]:
        r = local(app).get("/api/models", headers={"host": host})
        assert r.status_code == status, (host, r.text)
        if status == 421:
            assert "localhost" in r.json()["error"]


def test_a_non_loopback_address_warns_and_is_the_only_other_name(capsys):
    app = create_app(tiny_loaded(), include_default=False, host="192.168.7.9")
    err = capsys.readouterr().err
    assert err.startswith("warning: binding 192.168.7.9") and "other machines" in err
    assert local(app).get("/api/models", headers={"host": "192.168.7.9:8000"}).status_code == 200
    assert local(app).get("/api/models", headers={"host": "10.0.0.1:8000"}).status_code == 421


# ----------------------------------------------------------------------------- admission and the fair lock


def test_heavy_requests_beyond_the_limit_get_429_at_once():
    loaded = tiny_loaded()
    app = create_app(loaded, include_default=False, limits=Limits(max_heavy_requests=2))
    client = local(app)
    entry = app.state.registry.get(None)
    answers: list[int] = []
    with entry.lock.full():  # the model is busy: admitted requests wait for it
        waiting = [threading.Thread(target=lambda: answers.append(client.post("/api/analyze", json={"prompt": PROMPT})
                                                                  .status_code)) for _ in range(2)]
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 10
        while app.state.heavy.snapshot()["active"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        r = client.post("/api/lens", json={"prompt": PROMPT})
        assert r.status_code == 429 and "limit is 2" in r.json()["error"]
        assert time.perf_counter() - t0 < 2  # refused at once, not queued
    for t in waiting:
        t.join(timeout=30)
    assert answers == [200, 200]
    snap = client.get("/api/status").json()["heavy"]
    assert snap["active"] == 0 and snap["refused"] == 1 and snap["admitted"] >= 2


def test_a_decode_step_waits_behind_at_most_one_full_pass():
    lock = FairLock()
    order: list[str] = []

    def take(kind: str, name: str):
        with lock.hold(kind):
            order.append(name)
            time.sleep(0.01)

    with lock.full():  # a full pass runs; three more queue, then a decode step
        threads = [threading.Thread(target=take, args=("full", f"full{i}")) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        decode = threading.Thread(target=take, args=("decode", "decode"))
        decode.start()
        time.sleep(0.1)
    for t in threads + [decode]:
        t.join(timeout=10)
    assert order.index("decode") <= 1, order  # behind at most one of the queued full passes
    assert sorted(order) == ["decode", "full0", "full1", "full2"]


def test_each_heavy_route_has_a_token_cap():
    loaded = tiny_loaded(n_ctx=4096)
    client = local(create_app(loaded, include_default=False, limits=Limits(max_analysis_tokens=16, max_lens_tokens=4)))
    long_prompt = "the king is a man of the dogs " * 4  # 32+ tokens
    for route, extra in [("/api/analyze", {}), ("/api/pipeline", {}),
                         ("/api/attention/head", {"layer": 0, "head": 0}), ("/api/step", {})]:
        r = client.post(route, json={"prompt": long_prompt, **extra})
        assert r.status_code == 422 and "at most 16" in r.json()["error"], (route, r.text)
    r = client.post("/api/lens", json={"prompt": "the king is a man"})  # 5 tokens
    assert r.status_code == 422 and "the logit lens takes at most 4" in r.json()["error"], r.text
    assert client.post("/api/lens", json={"prompt": "the king is"}).status_code == 200
    r = client.post("/api/lens", json={"prompt": "x" * 20_001})
    assert r.status_code == 422 and "the limit is 20000" in r.json()["error"]


def test_the_lens_in_chunks_equals_the_lens_at_once():
    from glassgpt.inspect.lens import logit_lens
    from glassgpt.web import analysis

    loaded = tiny_loaded()
    ids = loaded.tokenizer.encode(PROMPT * 3)  # longer than one chunk
    assert len(ids) > analysis.LENS_CHUNK
    got = analysis.lens(loaded, ids, 3)
    want = logit_lens(loaded.model, ids, 3)
    assert [l_["name"] for l_ in got["layers"]] == want.layer_names
    got_ids = [[[g["id"] for g in pos] for pos in layer["positions"]] for layer in got["layers"]]
    assert got_ids == want.top_ids.tolist()


# ----------------------------------------------------------------------------- memory, measured (SmolLM2)


def _status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MB
    raise KeyError(key)


@pytest.mark.slow
def test_no_request_raises_the_servers_memory_by_more_than_1_gb_on_smollm2():
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="2")
    server = subprocess.Popen([sys.executable, "-m", "glassgpt", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/api/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        http = httpx.Client(base_url=url, timeout=600)
        limits = http.get("/api/status").json()["limits"]
        at_cap = " the cat" * (limits["max_analysis_tokens"] // 2)  # two tokens each: exactly the cap
        lens_cap = " the cat" * (limits["max_lens_tokens"] // 2)
        n = len(http.post("/api/analyze", json={"prompt": " the cat"}).json()["tokens"])
        assert n == 2
        start = _status(server.pid, "VmRSS")
        rises = {}
        for name, route, body, status in [
            ("analyze", "/api/analyze", {"prompt": at_cap}, 200),
            ("lens", "/api/lens", {"prompt": lens_cap, "k": 10}, 200),
            ("pipeline", "/api/pipeline", {"prompt": at_cap, "layer": 29, "head": 8}, 200),
            ("head", "/api/attention/head", {"prompt": at_cap, "layer": 3, "head": 2}, 200),
            ("attention grid", "/api/attention", {"prompt": " the cat" * 85}, 200),
            ("20,000 characters to the lens", "/api/lens", {"prompt": "的" * 20_000}, 422),
            ("one token over the cap", "/api/pipeline", {"prompt": at_cap + " the"}, 422),
        ]:
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
            before = _status(server.pid, "VmRSS")
            r = http.post(route, json=body)
            assert r.status_code == status, (name, r.text[:200])
            rises[name] = _status(server.pid, "VmHWM") - before
        with http.stream("POST", "/api/generate", json={"prompt": at_cap, "max_new_tokens": 8, "temperature": 0}) as r:
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")
            before = _status(server.pid, "VmRSS")
            assert r.status_code == 200 and any(line.startswith("event: done") for line in r.iter_lines())
            rises["generate"] = _status(server.pid, "VmHWM") - before
        time.sleep(1)
        end = _status(server.pid, "VmRSS")
        print(f"\nserver RSS {start:.0f} MB at the start, {end:.0f} MB after; peak rise per request (MB): "
              + ", ".join(f"{k} {v:.0f}" for k, v in rises.items()))
        assert all(v < 1024 for v in rises.values()), rises
        assert rises["20,000 characters to the lens"] < 50 and rises["one token over the cap"] < 50
        assert end - start < 200, (start, end)  # the memory came back
    finally:
        server.terminate()
        server.wait(timeout=30)
