"""glassgpt export --format gguf: our GGUF loads back with equal logits and transformers' GGUF loader reads it;
every bundled training recipe exports to a format transformers loads."""

from __future__ import annotations

import pytest
import torch

from glassgpt.cli import main
from glassgpt.config import ModelConfig
from glassgpt.convert.gguf import metadata, read_gguf
from glassgpt.load import load_gguf
from glassgpt.convert.gguf_write import export_gguf
from glassgpt.errors import CheckpointError
from glassgpt.load import Loaded, load_model
from glassgpt.model import GPT
from glassgpt.tokenizer import BPETokenizer, CharTokenizer
from glassgpt.train_config import bundled_configs, make_config
from gguf_synth import TEMPLATE, tiny_model, write_gguf

TEXT = "To be, or not to be, that is the question: 1234 whether 'tis nobler in the mind to suffer. " * 20
SAMPLES = ["whether 'tis nobler", "Ünïcode ✓ 123", "  spaced\n\tout", "<|endoftext|>to be"]


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer.train([TEXT], vocab_size=300)


def _randomised(cfg: ModelConfig, seed=0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm gains off 1, biases off 0: a wrong map shows
                p.add_(0.2 * torch.randn_like(p))
    return model


def gpt2_loaded(bpe, **kw) -> Loaded:
    # n_ctx 1024: transformers' GGUF loader reads gpt2.context_length into a field GPT2Config ignores (n_ctx, not
    # n_positions), so it builds 1024 positions whatever the file says
    cfg = ModelConfig(name="tiny-gpt2", d_vocab=bpe.vocab_size, n_ctx=1024, d_model=64, n_layers=2, n_heads=4,
                      positions="learned", norm="layernorm", mlp="gelu", **kw)
    return Loaded(_randomised(cfg), bpe, "memory", "run", chat_template=TEMPLATE, eos_token="<|endoftext|>")


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def _transformers(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return hf, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("biases", [True, False])
def test_gpt2_style_round_trips_and_transformers_reads_it(tmp_path, bpe, biases):
    loaded = gpt2_loaded(bpe, attn_bias=biases, mlp_bias=biases, tie_embeddings=biases)
    path = export_gguf(loaded, tmp_path, "f32")
    assert path.name == "model.gguf"
    back = load_model(path)
    x = torch.randint(0, bpe.vocab_size, (2, 23))
    torch.testing.assert_close(_logits(back.model, x), _logits(loaded.model, x), atol=1e-5, rtol=1e-5)
    assert back.chat_template == TEMPLATE and back.eos_token == "<|endoftext|>"
    hf, hf_tok = _transformers(path)
    assert hf.config.model_type == "gpt2"
    torch.testing.assert_close(hf(x).logits, _logits(loaded.model, x), atol=1e-4, rtol=1e-4)
    for s in SAMPLES:
        assert back.tokenizer.encode(s) == bpe.encode(s)
        assert hf_tok.encode(s, add_special_tokens=False) == bpe.encode(s), s


def test_llama_style_round_trips_and_transformers_reads_it(tmp_path):
    source = load_gguf(write_gguf(tmp_path / "tiny.gguf", tiny_model(seed=4)))
    path = export_gguf(source, tmp_path / "again.gguf", "f32")
    back = load_model(path)
    x = torch.randint(0, source.model.cfg.d_vocab, (2, 19))
    torch.testing.assert_close(_logits(back.model, x), _logits(source.model, x), atol=1e-6, rtol=1e-6)
    assert back.chat_template == source.chat_template and back.stop_ids == source.stop_ids
    meta = metadata(read_gguf(path))
    assert meta["tokenizer.ggml.pre"] == "smollm" and meta["general.architecture"] == "llama"
    hf, hf_tok = _transformers(path)
    torch.testing.assert_close(hf(x).logits, _logits(source.model, x), atol=1e-4, rtol=1e-4)
    for s in ["the tan in a  an", "hello 12 world", "<|im_start|>user\nhi<|im_end|>"]:
        assert hf_tok.encode(s, add_special_tokens=False) == source.tokenizer.encode(s), s


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_smaller_types_store_what_the_gguf_package_rounds_to(tmp_path, bpe, kind):
    import gguf
    import numpy as np

    loaded = gpt2_loaded(bpe, d_mlp=256)
    path = export_gguf(loaded, tmp_path, kind)
    back = load_model(path)
    types = set(back.metadata["tensor_types"])
    assert types == ({"F32", "F16"} if kind == "f16" else {"F32", "Q8_0"})  # 1-D tensors stay exact
    W = loaded.model.blocks[1].mlp.W_down.detach().numpy()  # (d_mlp, d_model); GGUF rows are its columns
    qt = gguf.GGMLQuantizationType[kind.upper()]
    rows = np.ascontiguousarray(W.T)
    expected = rows.astype(np.float16).astype(np.float32) if kind == "f16" else \
        gguf.quants.dequantize(gguf.quants.quantize(rows, qt), qt)
    assert torch.equal(back.model.blocks[1].mlp.W_down, torch.from_numpy(np.ascontiguousarray(expected.T)))
    x = torch.randint(0, bpe.vocab_size, (1, 20))
    ours, theirs = _logits(back.model, x), _logits(loaded.model, x)
    assert 0 < (ours - theirs).abs().max() < 0.05 * theirs.abs().max()


def test_export_command_writes_a_gguf(tmp_path, capsys):
    src = write_gguf(tmp_path / "tiny.gguf", tiny_model(seed=5))
    out = tmp_path / "out"
    assert main(["export", str(src), "--format", "gguf", "--gguf-type", "q8_0", str(out)]) == 0
    assert "model.gguf" in capsys.readouterr().out
    assert load_model(out / "model.gguf").metadata["file_type"] == 7  # MOSTLY_Q8_0


def test_what_gguf_cannot_hold_is_refused_in_one_line(tmp_path, bpe, capsys):
    rope_gelu = Loaded(_randomised(ModelConfig(d_vocab=bpe.vocab_size, n_ctx=32, d_model=32, n_layers=1, n_heads=2,
                                               positions="rope", norm="rmsnorm", mlp="gelu")), bpe, "m", "run")
    with pytest.raises(CheckpointError, match="GGUF has no architecture.*--format hf"):
        export_gguf(rope_gelu, tmp_path / "a")
    chars = CharTokenizer("abc ")
    char_model = Loaded(_randomised(ModelConfig(d_vocab=4, n_ctx=32, d_model=32, n_layers=1, n_heads=2)), chars, "m",
                        "run")
    with pytest.raises(CheckpointError, match="char tokenizer"):
        export_gguf(char_model, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything


# ----------------------------------------------------------------------------- every bundled recipe exports


@pytest.mark.parametrize("recipe", bundled_configs())
def test_every_bundled_recipe_exports_to_a_folder_transformers_loads(tmp_path, recipe):
    """The recipe's architecture (positions, norm, MLP, biases, heads, tying) at a test's size, random weights."""
    from transformers import AutoModelForCausalLM

    from glassgpt.convert.export import export_hf

    cfg = make_config(recipe).model_config(65)
    small = cfg.replace(n_layers=2, d_model=8 * cfg.n_heads, d_mlp=32 * cfg.n_heads, n_ctx=min(cfg.n_ctx, 64),
                        dropout=0.0)
    chars = CharTokenizer([chr(32 + i) for i in range(65)])
    loaded = Loaded(_randomised(small), chars, recipe, "run")
    export_hf(loaded, tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    x = torch.randint(0, 65, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, loaded.model(x), atol=1e-4, rtol=1e-4)
    again = load_model(tmp_path)  # and glassgpt reads its own export back
    torch.testing.assert_close(_logits(again.model, x), _logits(loaded.model, x), atol=1e-5, rtol=1e-5)
