import pytest
import torch

from glassgpt import GPT, ModelConfig, preset
from glassgpt.config import PRESETS


def _count(cfg: ModelConfig) -> int:
    with torch.device("meta"):
        return GPT(cfg).num_params()


def test_gpt2_parameter_count_is_124M_tied():
    assert _count(preset("gpt2")) == 124_439_808


@pytest.mark.parametrize("name", ["gpt2", "gpt2-medium"])
def test_gpt2_presets_count_like_transformers(name):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = preset(name)
    hf = GPT2Config(n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_positions=cfg.n_ctx,
                    vocab_size=cfg.d_vocab)
    with torch.device("meta"):
        theirs = GPT2LMHeadModel(hf).num_parameters()
    assert _count(cfg) == theirs


def test_smollm2_preset_counts_like_transformers():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = preset("smollm2-135m")
    hf = LlamaConfig(vocab_size=cfg.d_vocab, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
                     num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                     intermediate_size=cfg.d_mlp, max_position_embeddings=cfg.n_ctx, tie_word_embeddings=True)
    with torch.device("meta"):
        theirs = LlamaForCausalLM(hf).num_parameters()
    assert _count(cfg) == theirs == 134_515_008


def test_small_cpu_presets_have_the_documented_shapes():
    baby, small = preset("baby"), preset("small")
    assert (baby.n_layers, baby.n_heads, baby.d_model, baby.n_ctx) == (4, 4, 128, 64)
    assert (small.n_layers, small.n_heads, small.d_model, small.n_ctx) == (6, 6, 384, 256)
    assert set(PRESETS) >= {"gpt2", "gpt2-medium", "smollm2-135m", "baby", "small"}


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"d_model": 100, "n_heads": 3}, "d_model"),
        ({"n_heads": 4, "n_kv_heads": 3}, "n_heads"),
        ({"n_layers": 0}, "n_layers"),
        ({"d_vocab": -5}, "d_vocab"),
        ({"n_ctx": 0}, "n_ctx"),
        ({"norm": "batchnorm"}, "norm"),
        ({"mlp": "relu"}, "mlp"),
        ({"positions": "sinusoid"}, "positions"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_impossible_configs_name_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{"d_model": 64, "n_heads": 4, **changes})


def test_config_round_trips_through_a_dict_and_rejects_unknown_keys():
    cfg = preset("smollm2-135m")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="n_embd"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_embd": 3})


def test_defaults_fill_kv_heads_and_mlp_width():
    cfg = ModelConfig(d_model=64, n_heads=4)
    assert cfg.n_kv_heads == 4 and cfg.d_mlp == 256 and cfg.d_head == 16
