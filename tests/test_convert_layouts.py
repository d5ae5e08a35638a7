"""Model files as people have them: the Hub's GPT-2 layout, Qwen2-style biases, GGUF blobs without a suffix,
and a one-line error naming whatever glassgpt does not support."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from glassgpt.cli import main
from glassgpt.load import load_gguf
from glassgpt.errors import GlassError
from glassgpt.load import load_model
from glassgpt.tokenizer import BPETokenizer
from gguf_synth import tiny_model, write_gguf

TEXT = "The capital of France is Paris. The capital of Italy is Rome. " * 10


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train([TEXT], vocab_size=300)


def _randomise(hf):
    with torch.no_grad():  # non-trivial norms and biases (transformers starts them at 1 and 0)
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    return hf.eval()


def _same_logits(folder, hf, vocab):
    loaded = load_model(folder)
    x = torch.randint(0, vocab, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), hf(x).logits, atol=1e-4, rtol=1e-4)
    return loaded


def _cli_error(capsys, path) -> str:
    capsys.readouterr()  # transformers' own progress bars while writing the fixture
    assert main(["model", "--model", str(path)]) == 1  # fails while running: exit 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


# ----------------------------------------------------------------------------- GPT-2 in both key layouts


def test_gpt2_in_the_hubs_own_layout_loads_like_transformers(tmp_path, tokenizer):
    """The Hub's gpt2 stores GPT2Model's keys (wte.weight, h.0.…) and no lm_head, with vocab.json + merges.txt."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    V = tokenizer.vocab_size
    hf = _randomise(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=64, n_embd=64, n_layer=2, n_head=4)))
    bare = {k.removeprefix("transformer."): v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    assert "wte.weight" in bare and "h.1.attn.c_attn.weight" in bare
    for i in range(2):  # the Hub's file also carries each layer's causal-mask buffer: not a weight
        bare[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
    save_file(bare, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    vocab, merges = tokenizer.tok.model.save(str(tmp_path))  # GPT-2's tokenizer files
    assert vocab.endswith("vocab.json") and merges.endswith("merges.txt")

    theirs = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # transformers reads this layout too
    torch.testing.assert_close(theirs.lm_head.weight, hf.lm_head.weight)
    loaded = _same_logits(tmp_path, theirs, V)
    assert loaded.tokenizer.encode("The capital of") == tokenizer.encode("The capital of")


def test_gpt2_with_the_prefix_loads_too(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    V = tokenizer.vocab_size
    hf = _randomise(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=64, n_embd=64, n_layer=2, n_head=4)))
    hf.save_pretrained(tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert "transformer.wte.weight" in f.keys()
    tokenizer.save(tmp_path)
    _same_logits(tmp_path, hf, V)


# ----------------------------------------------------------------------------- Llama family with biases


def test_qwen2_with_qkv_biases_loads_like_transformers(tmp_path, tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    V = tokenizer.vocab_size
    cfg = Qwen2Config(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    hf = _randomise(Qwen2ForCausalLM(cfg))
    assert hf.model.layers[0].self_attn.q_proj.bias is not None and hf.model.layers[0].self_attn.o_proj.bias is None
    hf.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    loaded = _same_logits(tmp_path, hf, V)
    assert loaded.model.cfg.attn_bias and not loaded.model.blocks[0].attn.b_O.any()


def test_llama_with_attention_and_mlp_biases_loads_like_transformers(tmp_path, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    V = tokenizer.vocab_size
    cfg = LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=64, attention_bias=True, mlp_bias=True)
    hf = _randomise(LlamaForCausalLM(cfg))
    hf.save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    _same_logits(tmp_path, hf, V)


def test_biases_the_config_leaves_out_are_named(tmp_path, tokenizer, capsys):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"], attention_bias=False)
    (tmp_path / "config.json").write_text(json.dumps(config))
    err = _cli_error(capsys, tmp_path)
    assert "self_attn.k_proj.bias" in err and "attention_bias" in err


# ----------------------------------------------------------------------------- files by their magic bytes


def test_a_gguf_without_the_suffix_loads(tmp_path):
    """ollama keeps models as blobs named sha256-…, with no suffix: the first four bytes say GGUF."""
    model = tiny_model(seed=2)
    blob = write_gguf(tmp_path / "sha256-0123abcd", model)
    loaded = load_model(blob)
    x = torch.randint(0, model.cfg.d_vocab, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), load_gguf(blob).model(x))
    assert loaded.kind == "gguf" and loaded.chat_template


@pytest.mark.parametrize("head,word", [(b"PK\x03\x04" + b"\0" * 40, "pickle"), (b"\x80\x04\x95" + b"\0" * 40, "pickle"),
                                       (b"hello, world: just text", "not a GGUF")])
def test_other_files_are_named_by_what_they_are(tmp_path, capsys, head, word):
    path = tmp_path / "model.bin"
    path.write_bytes(head)
    assert word in _cli_error(capsys, path)


def test_a_lone_safetensors_file_asks_for_its_folder(tmp_path, capsys):
    save_file({"x": torch.zeros(3)}, str(tmp_path / "weights"))  # no suffix either
    assert "no model config" in _cli_error(capsys, tmp_path / "weights")


# ----------------------------------------------------------------------------- what is not supported, named


LLAMA = {"model_type": "llama", "vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
         "num_attention_heads": 4, "max_position_embeddings": 64}


@pytest.mark.parametrize("change,named", [
    ({"model_type": "bert", "architectures": ["BertModel"]}, "'bert'"),
    ({"model_type": "mamba"}, "'mamba'"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "scaled RoPE"),
    ({"model_type": "mistral", "sliding_window": 32}, "sliding-window"),
    ({"hidden_act": "relu"}, "hidden_act 'relu'"),
    ({"head_dim": 32}, "head_dim"),
])
def test_unsupported_architectures_are_named(tmp_path, capsys, change, named):
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, **change}))
    save_file({"model.embed_tokens.weight": torch.zeros(300, 64)}, str(tmp_path / "model.safetensors"))
    assert named in _cli_error(capsys, tmp_path)


def test_a_gated_gelu_mlp_is_refused(tmp_path, tokenizer, capsys):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu_pytorch_tanh")
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    tokenizer.save(tmp_path)
    assert "gated GELU" in _cli_error(capsys, tmp_path)


@pytest.mark.parametrize("files,named", [({"tokenizer.model": b"\n\x0esentencepiece"}, "SentencePiece"),
                                         ({"vocab.txt": b"[PAD]\n[UNK]\n"}, "WordPiece"),
                                         ({}, "no tokenizer.json")])
def test_unsupported_tokenizers_are_named(tmp_path, capsys, files, named):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                      num_attention_heads=4, max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert named in _cli_error(capsys, tmp_path)
    with pytest.raises(GlassError):
        load_model(tmp_path)
