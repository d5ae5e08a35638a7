"""The explorer page in a real browser: Debian's chromium driven by Playwright, against
uvicorn serving a tiny model on a loopback port. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from glassgpt.generate import SampleConfig, Sampler
from glassgpt.web import Limits, create_app
from test_web_api import PROMPT, serving, tiny_loaded

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(n_ctx=4096, name="tiny")  # a long context, so a generation can run long enough to stop


@pytest.fixture(scope="module")
def server(loaded):
    app = create_app(loaded, include_default=False, limits=Limits(max_new_tokens=4000))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("#tokens .chip")
    yield page
    page.close()
    assert not errors, errors  # no JavaScript error on the way


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def chip_ids(page) -> list[int]:
    return [int(x) for x in page.locator("#tokens .chip .id").all_inner_texts()]


def bar_values(page) -> list[float]:
    return [float(v.rstrip("%")) / 100 for v in page.locator("#bars .bar-value").all_inner_texts()]


def test_typing_a_prompt_shows_its_tokens(page, loaded):
    assert chip_ids(page) == loaded.tokenizer.encode(page.locator("#prompt").input_value())
    page.locator("#prompt").fill(PROMPT)
    want = loaded.tokenizer.encode(PROMPT)
    page.wait_for_function(f"document.querySelectorAll('#tokens .chip').length === {len(want)}")
    assert chip_ids(page) == want
    pieces = page.locator("#tokens .chip .piece").all_inner_texts()
    assert pieces == [loaded.tokenizer.id_to_piece(i).replace(" ", "·") for i in want]  # BPE pieces, e.g. Ġking
    assert any(p.startswith("Ġ") for p in pieces)
    shot(page, "explorer-tokens")


def test_the_pages_sampling_maths_equals_the_samplers(page, loaded):
    ids = loaded.tokenizer.encode(PROMPT)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids]))[0, -1].sort(descending=True).values  # (d_vocab,)
    settings = [(1.0, 0, 1.0, 0.0), (0.0, 0, 1.0, 0.0), (0.5, 0, 1.0, 0.0), (2.5, 0, 1.0, 0.0), (1.0, 7, 1.0, 0.0),
                (1.3, 0, 0.6, 0.0), (0.8, 20, 0.9, 0.0), (1.0, 0, 1.0, 0.2), (1.7, 50, 0.95, 0.05)]
    js = page.evaluate(
        """async ([logits, settings]) => {
            const { probabilities } = await import("/static/distribution.js");
            const sorted = new Float32Array(logits);
            return settings.map(([temperature, topK, topP, minP]) =>
                Array.from(probabilities(sorted, { temperature, topK, topP, minP })));
        }""",
        [logits.tolist(), settings],
    )
    for (T, k, p, m), got in zip(settings, js):
        cfg = SampleConfig(temperature=T, top_k=k or None, top_p=p if p < 1 else None, min_p=m or None)
        want = Sampler(cfg).probs(logits.unsqueeze(0))[0].numpy()
        np.testing.assert_allclose(np.array(got), want, atol=2e-5, err_msg=f"T={T} k={k} p={p} min_p={m}")


def test_moving_the_temperature_slider_changes_the_distribution(page):
    page.wait_for_selector("#bars .bar-row")
    at_1 = bar_values(page)
    assert len(at_1) == 20 and at_1 == sorted(at_1, reverse=True)
    page.locator("#temperature").fill("0")  # G12: T → 0 is one-hot on the top token
    page.wait_for_function("document.querySelector('#temperature-value').textContent === '0.00'")
    cold = bar_values(page)
    assert cold[0] == 1.0 and all(v == 0 for v in cold[1:])
    page.locator("#temperature").fill("3")  # large T flattens: the top token loses mass to the others
    page.wait_for_function("document.querySelector('#temperature-value').textContent === '3.00'")
    hot = bar_values(page)
    assert hot[0] < at_1[0] and hot[0] / hot[-1] < at_1[0] / at_1[-1]
    shot(page, "explorer-temperature-3")
    page.locator("#top-k").fill("5")
    page.wait_for_function("document.querySelector('#top-k-value').textContent === '5'")
    assert page.locator("#bars .bar-row.cut").count() == 15
    assert sum(bar_values(page)[:5]) == pytest.approx(1.0, abs=5e-4)


def test_clicking_a_head_opens_its_heatmap(page, loaded):
    T = len(loaded.tokenizer.encode(page.locator("#prompt").input_value()))
    cfg = loaded.model.cfg
    page.wait_for_selector("#attn-grid canvas.thumb")
    assert page.locator("#attn-grid canvas.thumb").count() == cfg.n_layers * cfg.n_heads
    page.locator('canvas.thumb[data-layer="1"][data-head="0"]').click()
    page.wait_for_selector("table.heatmap")
    assert page.locator("table.heatmap td").count() == T * T
    assert "layer 1, head 0" in page.locator("#heatmap-title").inner_text()
    page.locator("table.heatmap th.query-label").nth(T - 1).hover()  # the last token: what it reads, who reads it
    page.wait_for_selector("#hover-info .strip")
    strips = page.locator("#hover-info .strip")
    assert strips.count() == 2
    assert strips.nth(0).locator(".strip-chip").count() == T
    weights = [float(x) for x in strips.nth(0).locator(".strip-chip").evaluate_all("cs => cs.map(c => c.title)")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3)  # a query's row of the pattern sums to 1
    shot(page, "explorer-heatmap")


def test_the_logit_lens_has_a_row_per_stage(page, loaded):
    page.wait_for_selector("table.lens tbody tr")
    stages = page.locator("table.lens tbody th").all_inner_texts()
    assert stages == ["blocks.1", "blocks.0", "embed"]


def test_a_generation_streams_and_stops(page, server):
    page.locator("#max-new").fill("4000")
    page.locator("#temperature").fill("1")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#gen-output .new-part').textContent.length > 5")
    assert page.locator("#stop").is_enabled()
    page.locator("#stop").click()
    page.wait_for_function("document.querySelector('#gen-output').dataset.state === 'stopped'")
    assert page.locator("#generate").is_enabled() and not page.locator("#stop").is_enabled()
    shot(page, "explorer-generation-stopped")
    with httpx.Client(base_url=server, timeout=10) as http:
        for _ in range(200):  # the server notices the closed stream and stops generating
            status = http.get("/api/status").json()["generations"]
            if status["active"] == 0:
                break
            page.wait_for_timeout(50)
    assert status["active"] == 0 and status["cancelled"] >= 1 and status["finished"] == 0
