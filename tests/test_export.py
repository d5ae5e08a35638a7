"""glassgpt export: Hugging Face folders that transformers loads with equal logits; our own safetensors."""

from __future__ import annotations

import pytest
import torch

from glassgpt.cli import main
from glassgpt.config import ModelConfig
from glassgpt.convert.export import char_tokenizer_json, export_hf
from glassgpt.load import load_gguf
from glassgpt.errors import CheckpointError
from glassgpt.io import load_tensors, read_json
from glassgpt.load import Loaded, load_model
from glassgpt.model import GPT
from glassgpt.tokenizer import BPETokenizer, CharTokenizer
from gguf_synth import tiny_model, write_gguf

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 20


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A tiny random GPT-2 saved by transformers itself, with a byte-level BPE tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2")
    tok = BPETokenizer.train([TEXT], vocab_size=300)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=4))
    hf.save_pretrained(folder, safe_serialization=True)
    tok.save(folder)
    return folder, hf.eval()


def test_gpt2_round_trip_through_glassgpt_gives_transformers_the_same_logits(gpt2_folder, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    folder, original = gpt2_folder
    out = tmp_path / "out"
    assert main(["export", str(folder), "--format", "hf", str(out)]) == 0
    assert "config.json" in capsys.readouterr().out
    again = AutoModelForCausalLM.from_pretrained(out).eval()
    assert again.config.model_type == "gpt2"
    x = torch.randint(0, original.config.vocab_size, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, original(x).logits, atol=1e-5, rtol=1e-5)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(out)
    ours = load_model(folder).tokenizer
    for s in ["whether 'tis nobler", "Ünïcode ✓ 123", "  spaced\n\tout"]:
        assert hf_tok.encode(s, add_special_tokens=False) == ours.encode(s)


def test_gguf_model_exports_to_hf_and_to_safetensors(tmp_path):
    from transformers import AutoModelForCausalLM

    loaded = load_gguf(write_gguf(tmp_path / "tiny.gguf", tiny_model(seed=3), {"ffn": "Q8_0", "attn_q": "Q4_1"}))
    x = torch.randint(0, loaded.model.cfg.d_vocab, (2, 21))
    with torch.no_grad():
        ours = loaded.model(x)

    assert main(["export", str(tmp_path / "tiny.gguf"), "--format", "hf", str(tmp_path / "hf")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.model_type == "llama" and hf.config.num_key_value_heads == 2
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours, atol=1e-4, rtol=1e-4)
    assert read_json(tmp_path / "hf" / "tokenizer_config.json")["chat_template"] == loaded.chat_template

    assert main(["export", str(tmp_path / "tiny.gguf"), "--format", "safetensors", str(tmp_path / "st")]) == 0
    tensors = load_tensors(tmp_path / "st" / "model.safetensors")
    assert set(tensors) == set(loaded.model.state_dict())
    for name, t in loaded.model.state_dict().items():
        assert torch.equal(tensors[name], t), name
    cfg = ModelConfig.from_dict(read_json(tmp_path / "st" / "model_config.json"))
    assert cfg == loaded.model.cfg
    assert BPETokenizer.from_file(tmp_path / "st" / "tokenizer.json").encode("the tan") == \
        loaded.tokenizer.encode("the tan")


def test_character_tokenizer_exports_as_an_equivalent_tokenizers_file():
    from tokenizers import Tokenizer

    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    ours = CharTokenizer.from_text(text)
    theirs = Tokenizer.from_str(char_tokenizer_json(ours))
    sample = "hear me, Citizen\n\nspeak"
    assert theirs.encode(sample).ids == ours.encode(sample)
    assert theirs.decode(ours.encode(sample)) == sample


def test_model_without_a_hf_architecture_is_refused():
    cfg = ModelConfig(d_vocab=40, n_ctx=16, d_model=32, n_layers=1, n_heads=4, positions="rope", norm="layernorm")
    loaded = Loaded(GPT(cfg), CharTokenizer("abc"), "mem", "run")
    with pytest.raises(CheckpointError, match="no architecture"):
        export_hf(loaded, "/nonexistent/never-written")


def test_missing_model_is_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "hf", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "out").exists()
