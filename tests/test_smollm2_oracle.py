"""SmolLM2-135M-Instruct from its GGUF: glassgpt vs transformers loading the same file (gguf_file=).

transformers dequantises the file itself (about 30 s), so both models are loaded once per module.
"""

from __future__ import annotations

import pytest
import torch

from glassgpt.chat import Chat
from glassgpt.convert.gguf import default_gguf_path
from glassgpt.generate import SampleConfig, generate_ids
from glassgpt.load import load_model

pytestmark = pytest.mark.slow

PROMPTS = {
    "english": "The quick brown fox jumps over the lazy dog because",
    "chinese": "北京是中国的首都，也是一座历史悠久的城市。",
    "chat": None,  # filled in from the chat template
}
TEXTS = [
    "Hello, world!", "The year 2024 had 366 days; π ≈ 3.14159.", "naïve café — déjà vu", "北京欢迎你！",
    "def f(x):\n    return x ** 2  # square\n", "   leading spaces and\ttabs\n\n\nnewlines",
    "emoji 🙂👍🏽 and symbols ©®™", "<|im_start|>user\nHi there<|im_end|>\n", "don't won't it's we'll I'd",
    "URL: https://example.com/a?b=c&d=1", "ALL CAPS and MiXeD cAsE", "Ελληνικά, русский, العربية, हिन्दी",
]


@pytest.fixture(scope="module")
def ours():
    return load_model(default_gguf_path())


@pytest.fixture(scope="module")
def theirs():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = default_gguf_path()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tok


def _prompt(ours, name):
    if name == "chat":
        chat = Chat(ours, messages=[{"role": "user", "content": "Name three primary colours."}])
        return chat.prompt_text()
    return PROMPTS[name]


@pytest.mark.parametrize("name", list(PROMPTS))
def test_logits_agree(ours, theirs, name):
    model, tok = theirs
    text = _prompt(ours, name)
    ids = ours.tokenizer.encode(text)
    assert ids == tok.encode(text, add_special_tokens=False)
    x = torch.tensor([ids])
    with torch.no_grad():
        a, b = ours.model(x), model(x).logits
    assert (a - b).abs().max().item() < 1e-3


@pytest.mark.parametrize("name", ["english", "chat"])
def test_greedy_continuations_are_identical(ours, theirs, name):
    model, tok = theirs
    ids = ours.tokenizer.encode(_prompt(ours, name))
    cfg = SampleConfig(max_new_tokens=32, temperature=0, stop_ids=(ours.tokenizer.eos_id,))
    mine = [int(step[0]) for step in generate_ids(ours.model, [ids], cfg)]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False,
                             eos_token_id=ours.tokenizer.eos_id, pad_token_id=ours.tokenizer.eos_id)
    reference = out[0, len(ids):].tolist()
    if ours.tokenizer.eos_id in reference:
        reference = reference[: reference.index(ours.tokenizer.eos_id) + 1]
    assert mine == reference


def test_tokenizer_ids_equal(ours, theirs):
    _, tok = theirs
    for text in TEXTS:
        assert ours.tokenizer.encode(text) == tok.encode(text, add_special_tokens=False), text
        assert ours.tokenizer.decode(ours.tokenizer.encode(text)) == text


def test_chat_knows_the_capital_of_france(ours):
    chat = Chat(ours, sample=SampleConfig(max_new_tokens=40, temperature=0))
    assert "Paris" in chat.reply("What is the capital of France?")


@pytest.fixture(scope="module")
def ours_fp16():
    return load_model(default_gguf_path(), weights="fp16")


@pytest.mark.parametrize("name", list(PROMPTS))
def test_fp16_weights_answer_like_fp32(ours, ours_fp16, name):
    """chat and generate default to fp16 weights: their greedy answers must equal fp32's on these prompts."""
    ids = ours.tokenizer.encode(_prompt(ours, name))
    cfg = SampleConfig(max_new_tokens=32, temperature=0, stop_ids=(ours.tokenizer.eos_id,))
    exact = [int(step[0]) for step in generate_ids(ours.model, [ids], cfg)]
    light = [int(step[0]) for step in generate_ids(ours_fp16.model, [ids], cfg)]
    assert light == exact
    with torch.no_grad():
        drift = (ours_fp16.model(torch.tensor([ids])) - ours.model(torch.tensor([ids]))).abs().max().item()
    assert drift < 0.25  # the largest logit drift (logits span about ±30)


def test_fp16_chat_knows_the_capital_of_france(ours_fp16):
    chat = Chat(ours_fp16, sample=SampleConfig(max_new_tokens=40, temperature=0))
    assert "Paris" in chat.reply("What is the capital of France?")


def test_the_main_job_answers_paris():
    """`make run` is `glassgpt chat`: with its defaults it must answer the README's question."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "glassgpt", "chat", "--max-new-tokens", "40"],
                          input="What is the capital of France?\n/quit\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout and "Traceback" not in proc.stderr
