"""The explorer page in a real browser: Debian's chromium driven by Playwright, against
uvicorn serving a tiny model on a loopback port. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from glassgpt.config import ModelConfig
from glassgpt.generate import SampleConfig, Sampler
from glassgpt.load import Loaded
from glassgpt.model import GPT
from glassgpt.tokenizer import BPETokenizer
from glassgpt.web import Limits, create_app
from test_web_api import PROMPT, serving, tiny_loaded, write_hf_folder

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(n_ctx=4096, name="tiny")  # a long context, so a generation can run long enough to stop


ZH_CORPUS = ["中国 中国人 人 的 中国的 人的 国 中"] * 100


def chinese_loaded() -> Loaded:
    """A byte-level BPE model whose vocabulary holds 中, 国, 人 and 的 whole; any other character
    (猫) stays three single-byte tokens."""
    tok = BPETokenizer.train(ZH_CORPUS, vocab_size=280)
    torch.manual_seed(3)
    model = GPT(ModelConfig(d_vocab=tok.vocab_size, n_ctx=64, d_model=16, n_layers=1, n_heads=2, name="zh")).eval()
    return Loaded(model, tok, "memory", "run", stop_ids=[])


@pytest.fixture(scope="module")
def server(loaded, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    write_hf_folder(runs / "zh", chinese_loaded())
    app = create_app(loaded, runs_dir=runs, include_default=False, limits=Limits(max_new_tokens=4000))
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
    assert pieces == [loaded.tokenizer.decode([i]).replace(" ", "·") for i in want]  # the text: ·king, not Ġking
    assert "·king" in pieces
    titles = page.locator("#tokens .chip").evaluate_all("cs => cs.map(c => c.title)")
    assert 'piece "Ġking"' in titles[pieces.index("·king")]  # the vocabulary's own spelling, in the tooltip
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


def test_temperature_zero_means_the_same_in_python_and_on_the_page(page):
    """Greedy everywhere: all the mass on the largest logit, and of tied largest logits on the lowest id."""
    from glassgpt.model import softmax_with_temperature
    from glassgpt.web.analysis import sort_logits

    logits = torch.tensor([1.0, 3.0, -2.0, 3.0, 0.5, 3.0])  # ids 1, 3 and 5 tie
    values, order = sort_logits(logits)  # what the server sends the page
    js = page.evaluate(
        """async (sorted) => {
            const { probabilities } = await import("/static/distribution.js");
            return Array.from(probabilities(new Float32Array(sorted), { temperature: 0, topK: 0, topP: 1, minP: 0 }));
        }""",
        values.tolist(),
    )
    on_page = torch.zeros(6).index_copy_(0, order, torch.tensor(js, dtype=torch.float32))  # back to token ids
    in_python = softmax_with_temperature(logits, 0)
    sampler = Sampler(SampleConfig(temperature=0))
    assert torch.equal(in_python, torch.tensor([0.0, 1, 0, 0, 0, 0]))
    assert torch.equal(on_page, in_python)
    assert torch.equal(sampler.probs(logits.unsqueeze(0))[0], in_python)
    assert int(sampler.sample(logits.unsqueeze(0))) == 1


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
    page.wait_for_selector("#heatmap canvas.heatmap-canvas")
    assert page.locator("#heatmap td").count() == 0  # a canvas, not T² table cells
    assert "layer 1, head 0" in page.locator("#heatmap-title").inner_text()
    canvas = page.locator("#heatmap canvas")
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] - 3, "y": box["height"] - 3})  # the last token's query, last key
    page.wait_for_selector("#hover-info .strip")
    strips = page.locator("#hover-info .strip")
    assert strips.count() == 2
    assert strips.nth(0).locator(".strip-chip").count() == T
    weights = [float(x) for x in strips.nth(0).locator(".strip-chip").evaluate_all("cs => cs.map(c => c.dataset.weight)")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3)  # a query's row of the pattern sums to 1
    assert f"(pos {T - 1}) →" in page.locator("#hover-info .cell-info").inner_text()
    shot(page, "explorer-heatmap")
    # the keyboard reaches the same details: focus, arrows, Enter
    canvas.focus()
    page.keyboard.press("ArrowUp")
    assert f"(pos {T - 2}) →" in page.locator("#hover-info .cell-info").inner_text()
    page.keyboard.press("Enter")
    page.wait_for_selector("#hover-info .strip")


def test_the_logit_lens_has_a_row_per_stage(page, loaded):
    page.wait_for_selector("table.lens tbody tr")
    stages = page.locator("table.lens tbody th").all_inner_texts()
    assert stages == ["blocks.1", "blocks.0", "embed"]
    page.locator("table.lens tbody td").first.focus()  # keyboard focus shows the top five, as hover does
    info = page.locator("#lens-info").inner_text()
    assert info.startswith("blocks.1, after") and info.count("%") == 5


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


# ----------------------------------------------------------------------------- the pipeline, Step, never stale


def test_the_pipeline_panel_shows_every_stage_with_the_routes_numbers(page, server, loaded):
    page.wait_for_selector("#pipeline .stage")
    page.locator("#pipe-layer").select_option("1")
    page.locator("#pipe-head").select_option("1")
    page.locator("#tokens .chip").nth(2).click()  # follow the third token
    page.wait_for_function("document.querySelector('#pipeline-panel').dataset.state === 'ready' && "
                           "document.querySelector('#pipeline .stage[data-stage=token] .chip .id').textContent "
                           f"=== '{chip_ids(page)[2]}'")
    stages = page.locator("#pipeline .stage").evaluate_all("s => s.map(x => x.dataset.stage)")
    assert stages == ["token", "resid", "qkv", "scores", "mask", "softmax", "z", "write", "mlp", "lens", "final"]
    seeds = page.locator("#pipeline .stage .seed").all_inner_texts()
    assert all(seeds) and "T6" in seeds[4] and "G12" in seeds[-1]
    prompt = page.locator("#prompt").input_value()
    with httpx.Client(base_url=server, timeout=30) as http:
        want = http.post("/api/pipeline", json={"prompt": prompt, "position": 2, "layer": 1, "head": 1}).json()
    T = len(want["tokens"])
    cells = page.locator('#pipeline table[data-name="+ mask"] tbody td').all_inner_texts()
    assert len(cells) == T and cells[3:] == ["−∞"] * (T - 3)  # the future, masked
    assert [float(c.replace("−", "-")) for c in cells[:3]] == pytest.approx(want["scores"][:3], abs=0.006)
    weights = page.locator('#pipeline table[data-name="softmax"] tbody td').all_inner_texts()
    assert [float(w) for w in weights] == pytest.approx(want["pattern"], abs=6e-4)
    q_head = page.locator('#pipeline .vec[data-name^="q "] .vec-head').inner_text()
    assert f"norm {want['q']['norm']:.3f}".replace("-", "−") in q_head
    english = page.locator("#pipeline .stage .explain").first.inner_text()
    page.locator("#lang-zh").click()
    chinese = page.locator("#pipeline .stage .explain").first.inner_text()
    assert chinese != english and "嵌入" in chinese and "W_E" in chinese
    shot(page, "explorer-pipeline-zh")
    page.locator("#lang-en").click()
    assert page.locator("#pipeline .stage .explain").first.inner_text() == english


def test_step_draws_the_samplers_token_and_appends_it(page, loaded):
    page.wait_for_selector("#pipeline .stage")
    page.locator("#seed").fill("11")
    page.locator("#temperature").fill("1.5")
    before = page.locator("#prompt").input_value()
    ids = loaded.tokenizer.encode(before)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids]))[:, -1]
    want = int(Sampler(SampleConfig(temperature=1.5, seed=11)).sample(logits.float())[0])
    page.locator("#step").click()
    page.wait_for_function("document.querySelector('#gen-status').dataset.drawn !== undefined")
    assert int(page.locator("#gen-status").get_attribute("data-drawn")) == want
    after = before + loaded.tokenizer.decode([want])
    page.wait_for_function(f"document.querySelector('#prompt').value === {after!r}")
    n = len(loaded.tokenizer.encode(after))
    page.wait_for_function(f"document.querySelectorAll('#tokens .chip').length === {n}")
    page.wait_for_function("document.querySelector('#pipeline-panel').dataset.state === 'ready'")
    assert page.locator("#pipeline .stage[data-stage=token] .caption").inner_text().startswith(f"position {n - 1}")


def test_a_late_answer_never_overwrites_a_newer_one(page, loaded):
    # every request whose prompt says SLOW answers 1.5 s late, after the next prompt's answers
    page.evaluate("""() => {
        const real = window.fetch;
        window.slow = { sent: 0, answered: 0 };
        window.fetch = async (url, options) => {
            const slow = options && options.body && options.body.includes("SLOW");
            if (slow) window.slow.sent++;
            try {
                const response = await real(url, options);
                if (slow) await new Promise(r => setTimeout(r, 1500));
                return response;
            } finally {
                if (slow) window.slow.answered++;  // answered late, or aborted by the newer request
            }
        };
    }""")
    page.locator("#prompt").fill("SLOW the dog is a cat")
    page.wait_for_function("window.slow.sent >= 4")  # analyze, attention, lens, pipeline: out
    page.locator("#prompt").fill("the queen")
    want = loaded.tokenizer.encode("the queen")
    page.wait_for_function("window.slow.answered === window.slow.sent", timeout=120_000)  # late, but arrived
    for panel in ["dist-panel", "pipeline-panel", "lens-panel", "attn-panel"]:
        page.wait_for_function(f"document.querySelector('#{panel}').dataset.state === 'ready'", timeout=120_000)
    assert chip_ids(page) == want
    token_stage = page.locator("#pipeline .stage[data-stage=token] .chip .id").inner_text()
    assert int(token_stage) == want[-1]
    assert page.locator("table.lens thead th").count() == len(want) + 1


def test_an_error_greys_the_panel_and_says_why(page):
    page.route("**/api/lens", lambda route: route.fulfill(status=422, content_type="application/json",
                                                          body='{"error": "the lens says no", "status": 422}'))
    page.locator("#prompt").fill("the cat is a dog")
    page.wait_for_function("document.querySelector('#lens-panel').dataset.state === 'error'")
    assert page.locator("#lens-error").inner_text() == "the lens says no"
    assert page.locator("#lens table.lens").evaluate("t => getComputedStyle(t.parentElement).opacity") == "0.3"


def test_a_model_switch_clears_every_panel(page):
    page.wait_for_selector("#pipeline .stage")
    page.locator('canvas.thumb[data-layer="0"][data-head="0"]').click()
    page.wait_for_selector("#heatmap canvas")
    page.locator("#nearest-form button").click()
    page.wait_for_selector("#embed-result .bar-row")
    page.route("**/api/**", lambda route: None)  # from now on nothing answers: what shows must be cleared
    page.locator("#model-picker").select_option("runs/zh")
    page.wait_for_function("document.querySelector('#pipeline').children.length === 0")
    for selector in ["#heatmap", "#embed-result", "#lens", "#attn-grid", "#bars", "#tokens"]:
        assert page.locator(selector).evaluate("e => e.children.length") == 0, selector
    assert "Click a thumbnail" in page.locator("#heatmap-title").inner_text()


def test_a_chinese_prompt_shows_its_characters(page):
    page.locator("#model-picker").select_option("runs/zh")
    page.wait_for_function("document.querySelector('#model-info').textContent.includes('layers')")
    page.locator("#prompt").fill("中国人猫")
    page.wait_for_function("document.querySelector('#dist-panel').dataset.state === 'ready' && "
                           "document.querySelector('#tokens').textContent.includes('国')")
    pieces = page.locator("#tokens .chip .piece").all_inner_texts()
    whole = "".join(p for p in pieces if not p.startswith("<"))
    assert whole == "中国人"  # whole characters shown as themselves
    partial = [p for p in pieces if p.startswith("<")]
    assert partial == ["<E7>", "<8C>", "<AB>"]  # 猫 = E7 8C AB, three single-byte tokens
    titles = page.locator("#tokens .chip.partial").evaluate_all("cs => cs.map(c => c.title)")
    assert all("part of “猫”" in t for t in titles)
    page.locator("#tokens .chip.partial").first.focus()  # the keyboard (and a tap) reach the same words
    assert "part of “猫”" in page.locator("#chip-info").inner_text()
    page.wait_for_selector("table.lens tbody td")
    assert "中" in "".join(page.locator("table.lens thead th").all_inner_texts())
    shot(page, "explorer-chinese")


def test_a_phone_screen_has_no_horizontal_overflow(browser, server):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(server + "/")
    page.wait_for_selector("#pipeline .stage")
    page.wait_for_selector("#attn-grid canvas.thumb")
    page.locator('canvas.thumb[data-layer="1"][data-head="1"]').tap()
    page.wait_for_selector("#heatmap canvas")
    page.locator("#nearest-form button").tap()
    page.wait_for_selector("#embed-result .bar-row")
    page.locator("#bars .bar-row").first.tap()  # a tap shows what a hover would
    assert "logit" in page.locator("#bar-info").inner_text()
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] == 390, width
    shot(page, "explorer-phone")
    page.close()


def test_the_page_and_the_api_description_need_no_other_host(browser, server):
    page = browser.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(server + "/")
    page.wait_for_selector("#pipeline .stage")
    assert urls and all(u.startswith(server) or u.startswith("data:") for u in urls), urls
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.get("/docs").status_code == 404  # no page that loads its script from a CDN
        spec = http.get("/openapi.json").json()
    assert "/api/pipeline" in spec["paths"] and "/api/step" in spec["paths"]
    page.close()


@pytest.mark.slow
def test_pipeline_screenshots_on_smollm2_and_a_trained_char_model(browser, one_thread):
    """The README's pictures: the Pipeline panel on SmolLM2 and on a character model trained here."""
    from glassgpt.load import load_model
    from test_web_pipeline import CHAR_PROMPT, trained_char_loaded

    char, before, after = trained_char_loaded()
    assert after < 0.5 * before
    for name, model, prompt, layer, head, position, lang in [
            ("smollm2", load_model(None), "The capital of France is", 20, 5, None, "en"),
            ("char", char, CHAR_PROMPT, 1, 2, len(CHAR_PROMPT) - 4, "zh")]:  # mid-prompt: the mask shows −∞
        with serving(create_app(model, include_default=False)) as url:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url + "/")
            page.locator("#prompt").fill(prompt)
            page.locator("#seed").fill("0")
            page.locator("#pipe-layer").select_option(str(layer))
            page.locator("#pipe-head").select_option(str(head))
            page.wait_for_timeout(500)
            if position is not None:
                page.locator("#tokens .chip").nth(position).click()
            page.locator(f"#lang-{lang}").click()
            page.wait_for_timeout(500)
            page.wait_for_function("document.querySelector('#pipeline-panel').dataset.state === 'ready' && "
                                   f"document.querySelector('#pipeline .stage[data-stage=qkv] .vec-head').textContent.includes('head {head}')")
            stages = page.locator("#pipeline .stage").count()
            assert stages == 11
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#pipeline-panel").screenshot(path=str(ARTIFACTS / f"pipeline-{name}.png"))
            if name == "smollm2":
                page.locator('canvas.thumb[data-layer="20"][data-head="5"]').click()
                page.wait_for_selector("#heatmap canvas")
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(ARTIFACTS / "explorer-smollm2.png"))
            page.close()
