"""The explorer's translation panel: seq2seq runs under --runs, listed apart from the GPTs, and
POST /api/seq2seq/translate checked against the model's own decoding and cross-attention."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from glassgpt.seq2seq.checkpoint import save_run
from glassgpt.seq2seq.decode import beam_search
from glassgpt.seq2seq.model import EncoderDecoder
from glassgpt.seq2seq.pooling import PoolingClassifier
from glassgpt.seq2seq.task import Task, TaskConfig
from glassgpt.seq2seq.train import classifier_config, translate_batch, translator_config
from glassgpt.web import create_app
from test_web_api import local, serving, tiny_loaded

RUN_ID = "seq2seq/num2words"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def untrained_translator(task: Task, seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = translator_config(task, d_model=32, n_heads=2, n_enc_layers=1, n_dec_layers=2)
    model = EncoderDecoder(cfg, pad_id=task.src_vocab.pad_id).eval()
    with torch.no_grad():  # larger weights than the init, so the cross-attention is far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/num2words (a translator, numbers 0..999) and runs/sorted (a classifier, left out of the panel)."""
    runs = tmp_path_factory.mktemp("runs")
    task = Task(TaskConfig(name="digits-to-words", max_number=999))
    model = untrained_translator(task)
    save_run(runs / "num2words", model, task, train={}, log={})
    sorted_task = Task(TaskConfig(name="sorted"))
    classifier = PoolingClassifier(classifier_config(sorted_task, d_model=16, n_heads=2), pad_id=0)
    save_run(runs / "sorted", classifier, sorted_task, train={}, log={})
    return runs, model, task


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


@pytest.fixture(scope="module")
def client(runs, loaded):
    return local(create_app(loaded, runs_dir=runs[0], include_default=False))


def cross_attention(model: EncoderDecoder, task: Task, text: str, output_ids: list[int]) -> torch.Tensor:
    """(n_dec_layers, T, S): the decoder's cross-attention, heads averaged, with <bos> + output[:-1] as its input."""
    src = task.encode_sources([text])
    tgt_in = torch.tensor([[task.tgt_vocab.bos_id] + output_ids[:-1]])  # (1, T): row t predicts output t
    with torch.no_grad():
        _, cache = model.run_with_cache(src, tgt_in, names="decoder.blocks.*.cross_attn.pattern")
    return torch.stack([cache[f"decoder.blocks.{i}.cross_attn.pattern"][0].mean(0)
                        for i in range(model.cfg.n_dec_layers)])


def test_seq2seq_runs_are_listed_apart_from_the_gpts(client):
    assert [m["id"] for m in client.get("/api/models").json()["models"]] == ["tiny"]  # the GPT picker is unchanged
    models = client.get("/api/seq2seq/models").json()["models"]
    assert [m["id"] for m in models] == [RUN_ID]  # the classifier run is left out
    info = client.get(f"/api/seq2seq/models/{RUN_ID}").json()
    assert info["task"] == "digits-to-words" and info["src_ctx"] == 3 and info["n_dec_layers"] == 2
    assert info["source_chars"] == "0123456789" and info["example"] == "999"


@pytest.mark.parametrize("text", ["7", "407", "999"])
def test_translate_is_the_models_greedy_output_and_its_cross_attention(client, runs, text):
    _, model, task = runs
    r = client.post("/api/seq2seq/translate", json={"model": RUN_ID, "text": text})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == RUN_ID and out["source_tokens"] == list(text)
    assert out["output_text"] == translate_batch(model, task, [text])[0]
    assert out["output_tokens"][-1] == "<eos>" and "".join(out["output_tokens"][:-1]) == out["output_text"]
    alignment = torch.tensor(out["alignment"])
    T, S = len(out["output_tokens"]), len(text)
    assert alignment.shape == (model.cfg.n_dec_layers, T, S)
    torch.testing.assert_close(alignment.sum(-1), torch.ones(model.cfg.n_dec_layers, T), atol=1e-5, rtol=0)
    output_ids = [task.tgt_vocab.stoi[c] for c in out["output_tokens"]]
    torch.testing.assert_close(alignment, cross_attention(model, task, text, output_ids), atol=1e-5, rtol=0)
    if S > 1:
        assert alignment.max() > 1.5 / S  # not uniform: the oracle is not trivially met


def test_translate_with_beam_search_is_the_best_hypothesis(client, runs):
    _, model, task = runs
    out = client.post("/api/seq2seq/translate", json={"model": RUN_ID, "text": "58", "beam": 3}).json()
    best = beam_search(model, task.encode_sources(["58"]), task.tgt_vocab.bos_id, task.tgt_vocab.eos_id, beam=3)[0]
    assert out["output_text"] == task.tgt_vocab.decode(best.tokens)
    assert len(out["alignment"][0]) == len(best.tokens)


@pytest.mark.parametrize("body, status, words", [
    ({"model": RUN_ID, "text": "12a"}, 422, "'a'"),  # the task's own error names the symbol
    ({"model": RUN_ID, "text": "1x2y"}, 422, "'x', 'y'"),
    ({"model": RUN_ID, "text": "1234"}, 422, "at most 3"),  # and the limit
    ({"model": RUN_ID, "text": ""}, 422, "empty"),
    ({"model": RUN_ID}, 422, "text"),
    ({"model": RUN_ID, "text": "1", "beam": 0}, 422, "beam"),
    ({"model": RUN_ID, "text": "1", "extra": 1}, 422, "extra"),
    ({"model": "seq2seq/nope", "text": "1"}, 404, "unknown seq2seq model"),
    ({"model": "tiny", "text": "1"}, 404, "unknown seq2seq model"),  # a GPT is not a translator
    ({"model": "seq2seq/sorted", "text": "1"}, 404, "unknown seq2seq model"),  # nor a classifier
    ({"model": "seq2seq/../num2words", "text": "1"}, 404, "unknown seq2seq model"),
])
def test_bad_translate_requests_get_json_errors(client, body, status, words):
    r = client.post("/api/seq2seq/translate", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and r.json()["status"] == status
    assert client.post("/api/seq2seq/translate", json={"model": RUN_ID, "text": "1"}).status_code == 200


def test_no_runs_folder_no_translators(loaded):
    client = local(create_app(loaded, include_default=False))
    assert client.get("/api/seq2seq/models").json() == {"models": []}
    r = client.post("/api/seq2seq/translate", json={"text": "1"})
    assert r.status_code == 404 and "no seq2seq run" in r.json()["error"]


def test_the_page_loads_the_translation_module(client):
    assert '<script type="module" src="/static/seq2seq.js">' in client.get("/").text
    js = client.get("/static/seq2seq.js")
    assert js.status_code == 200 and "/api/seq2seq/translate" in js.text


# ----------------------------------------------------------------------------- in a real browser


@pytest.mark.browser
def test_typing_a_number_and_clicking_translate_shows_the_heatmap(runs, loaded):
    from playwright.sync_api import sync_playwright

    from test_web_browser import CHROMIUM_ARGS

    _, model, task = runs
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    errors: list[str] = []
    with serving(create_app(loaded, runs_dir=runs[0], include_default=False)) as url, \
            serving(create_app(loaded, include_default=False)) as plain_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1400})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(plain_url + "/")  # no translator: no panel
        page.wait_for_selector("#tokens .chip")
        assert page.locator("#seq2seq-panel").is_hidden()
        page.goto(url + "/")
        page.wait_for_selector("#seq2seq-panel:not([hidden])")
        page.locator("#seq2seq-text").fill("407")
        page.locator("#seq2seq-go").click()
        page.wait_for_selector("table.alignment td")
        want = translate_batch(model, task, ["407"])[0]
        assert page.locator("#seq2seq-output").inner_text() == want
        T = len(want) + 1  # + <eos>
        assert page.locator("table.alignment td").count() == T * 3
        assert page.locator("table.alignment th.source-label").all_inner_texts() == ["4", "0", "7"]
        assert len(page.locator("table.alignment th.query-label").all_inner_texts()) == T
        oracle = cross_attention(model, task, "407", [task.tgt_vocab.stoi[c] for c in want] + [task.tgt_vocab.eos_id])
        for layer in [1, 0]:  # the last layer is shown first; the picker switches
            page.locator("#seq2seq-layer").select_option(str(layer))
            weights = page.locator("table.alignment td").evaluate_all("cs => cs.map(c => +c.title)")
            got = torch.tensor(weights).view(T, 3)
            torch.testing.assert_close(got, oracle[layer], atol=1e-4, rtol=0)
            assert got.sum(-1).sub(1).abs().max() < 1e-3  # each output character's row sums to 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#seq2seq-panel").screenshot(path=str(ARTIFACTS / "explorer-seq2seq.png"))
        page.locator("#seq2seq-text").fill("4a")  # bad input: the task's error, in the panel
        page.locator("#seq2seq-go").click()
        page.wait_for_selector("#seq2seq-output.failed")
        assert "'a'" in page.locator("#seq2seq-output").inner_text()
        assert page.locator("table.alignment").count() == 0
        browser.close()
    assert not errors, errors
