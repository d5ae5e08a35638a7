"""PretrainedGPT: from_pretrained / generate / save_pretrained as thin doors onto load_model, generate and export."""

from __future__ import annotations

import pytest
import torch

from glassgpt.chat import Chat
from glassgpt.generate import SampleConfig, generate
from glassgpt.load import load_model
from glassgpt.model import GPT
from glassgpt.pretrained import PretrainedGPT
from gguf_synth import tiny_model, write_gguf

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("pre") / "tiny.gguf", tiny_model(seed=6))


def test_from_pretrained_is_load_model_with_doors(gguf_file):
    model = PretrainedGPT.from_pretrained(gguf_file)
    plain = load_model(gguf_file)
    assert isinstance(model, GPT) and type(model) is PretrainedGPT and model.tokenizer is model.loaded.tokenizer
    x = torch.randint(0, model.cfg.d_vocab, (1, 12))
    with torch.no_grad():
        assert torch.equal(model(x), plain.model(x))
    assert "blocks.0.attn.pattern" in model.hook_names()


def test_generate_is_glassgpts_generate(gguf_file):
    model = PretrainedGPT.from_pretrained(gguf_file)
    plain = load_model(gguf_file)
    cfg = SampleConfig(max_new_tokens=9, temperature=0, stop_ids=tuple(plain.stop_ids))
    assert model.generate("the tan", max_new_tokens=9, temperature=0) == generate(plain.model, plain.tokenizer,
                                                                                  "the tan", cfg)
    prompt = Chat(plain, messages=[{"role": "user", "content": "the tan"}]).prompt_text()
    assert model.generate("the tan", max_new_tokens=9, temperature=0, chat=True) == \
        generate(plain.model, plain.tokenizer, prompt, cfg)
    a = model.generate("in a", max_new_tokens=12, temperature=1.0, seed=3)
    assert a == model.generate("in a", max_new_tokens=12, temperature=1.0, seed=3)


@pytest.mark.parametrize("fmt", ["hf", "gguf", "safetensors"])
def test_save_pretrained_writes_what_export_writes(gguf_file, tmp_path, fmt):
    model = PretrainedGPT.from_pretrained(gguf_file)
    files = model.save_pretrained(tmp_path / fmt, format=fmt, gguf_type="f32")
    names = {f.name for f in files}
    assert {"hf": "config.json", "gguf": "model.gguf", "safetensors": "model_config.json"}[fmt] in names
    x = torch.randint(0, model.cfg.d_vocab, (1, 10))
    if fmt == "safetensors":
        return
    again = PretrainedGPT.from_pretrained(tmp_path / fmt / ("model.gguf" if fmt == "gguf" else ""))
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=1e-5, rtol=1e-5)
    if fmt == "hf":
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(tmp_path / fmt).eval()
        with torch.no_grad():
            torch.testing.assert_close(hf(x).logits, model(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="format must be"):
        model.save_pretrained(tmp_path / "x", format="onnx")
