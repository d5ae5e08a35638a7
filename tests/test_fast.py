"""Half-precision weights: the same model, stored lighter, computing in float32 between matmuls."""

import pytest
import torch

from glassgpt import GPT, preset
from glassgpt.errors import GlassError
from glassgpt.fast import half_weights
from glassgpt.generate import SampleConfig, generate_ids
from glassgpt.load import load_model


def _model() -> GPT:
    cfg = preset("smollm2-135m", d_vocab=211, n_ctx=64, d_model=96, n_layers=3, n_heads=6, n_kv_heads=2, d_mlp=160)
    return GPT(cfg).eval()


def test_half_weights_store_matrices_in_fp16_and_keep_norms_and_activations_fp32():
    model = _model()
    tokens = torch.randint(0, 211, (2, 20))
    ref = model(tokens)
    half_weights(model)
    attn = model.blocks[0].attn
    assert attn.W_Q.dtype == torch.float16 and attn.W_Q.shape == (96, 96)
    assert attn.W_Q.T.is_contiguous()  # column-major: x·W runs as the fast x·Wᵀ kernel
    assert model.embed.W_E.dtype == torch.float16 and model.embed.W_E.is_contiguous()
    assert model.blocks[0].ln1.w.dtype == torch.float32
    _, cache = model.run_with_cache(tokens, names=["blocks.1.resid_post"])
    assert cache["blocks.1.resid_post"].dtype == torch.float32
    out = model(tokens)  # prefill path (many rows: W upcast) ...
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 2e-2 * ref.abs().max()
    step = model(tokens[:1, :1])  # ... and the one-token path (half-precision matrix-vector products)
    assert (step - ref[:1, :1]).abs().max() < 2e-2 * ref.abs().max()


def test_half_weights_decode_like_fp32_with_the_cache():
    model = _model()
    prompt = [[5, 9, 13, 2, 7, 7, 1]]
    cfg = SampleConfig(max_new_tokens=12, temperature=0)
    ref = [int(t[0]) for t in generate_ids(model, prompt, cfg)]
    half_weights(model)
    assert [int(t[0]) for t in generate_ids(model, prompt, cfg)] == ref


def test_unknown_weight_format_is_refused():
    with pytest.raises(GlassError, match="fp32, fp16"):
        load_model(None, weights="int3")
