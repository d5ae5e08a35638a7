"""The oracle: Hugging Face transformers builds GPT-2 and Llama with random weights; our logits must match."""

import pytest
import torch

from glassgpt import GPT
from glassgpt.convert.hf import config_from_hf, config_to_hf, from_hf_state_dict, load_hf_model, to_hf_state_dict
from glassgpt.errors import CheckpointError
from glassgpt.generate import SampleConfig, generate_ids

V = 300


def hf_gpt2(tied=True):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=V, n_positions=64, n_embd=64, n_layer=3, n_head=4, tie_word_embeddings=tied,
                     bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg).eval()


def hf_llama(tied=False, kv_heads=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=V, max_position_embeddings=64, hidden_size=96, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=kv_heads, intermediate_size=160,
                      rope_theta=1000.0, rms_norm_eps=1e-5, tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def _randomise(hf):
    with torch.no_grad():  # non-trivial norms and biases (HF initialises them to 1 and 0)
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    return hf


ORACLES = {
    "gpt2": lambda: hf_gpt2(),
    "gpt2-untied": lambda: hf_gpt2(tied=False),
    "llama-gqa": lambda: hf_llama(),
    "llama-mha-tied": lambda: hf_llama(tied=True, kv_heads=6),
}


def _ours(hf) -> GPT:
    model = GPT(config_from_hf(hf.config.to_dict()))
    load_hf_model(model, hf.state_dict())
    return model.eval()


@pytest.mark.parametrize("kind", ORACLES)
def test_logits_equal_transformers(kind):
    hf = _randomise(ORACLES[kind]())
    ours = _ours(hf)
    tokens = torch.randint(0, V, (3, 40))
    with torch.no_grad():
        theirs = hf(tokens).logits
    assert (ours(tokens) - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", ORACLES)
def test_greedy_continuations_equal_transformers(kind):
    hf = _randomise(ORACLES[kind]())
    ours = _ours(hf)
    prompt = torch.randint(1, V, (1, 8))
    with torch.no_grad():
        theirs = hf.generate(prompt, max_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0,
                             min_new_tokens=20)[0, 8:].tolist()
    mine = [int(t[0]) for t in generate_ids(ours, prompt, SampleConfig(max_new_tokens=20, temperature=0))]
    assert len(mine) == 20 and mine == theirs


@pytest.mark.parametrize("kind", ORACLES)
def test_state_dict_round_trips_through_the_key_map(kind):
    hf = ORACLES[kind]()
    cfg = config_from_hf(hf.config.to_dict())
    theirs = {k: v for k, v in hf.state_dict().items()}
    back = to_hf_state_dict(from_hf_state_dict(theirs, cfg), cfg)
    for key, value in theirs.items():
        assert torch.equal(back[key], value), key
    assert config_from_hf(config_to_hf(cfg)).replace(name=cfg.name) == cfg


def test_a_checkpoint_missing_a_tensor_is_named():
    hf = hf_gpt2()
    sd = hf.state_dict()
    del sd["transformer.h.1.mlp.c_fc.weight"]
    model = GPT(config_from_hf(hf.config.to_dict()))
    with pytest.raises(CheckpointError, match="blocks.1.mlp.W_up"):
        load_hf_model(model, sd)


def test_unsupported_architectures_are_refused():
    with pytest.raises(CheckpointError, match="bert"):
        config_from_hf({"model_type": "bert"})


def test_hf_folder_loads_through_load_model(tmp_path):
    from glassgpt.load import load_model
    from glassgpt.tokenizer import BPETokenizer

    hf = _randomise(hf_gpt2())
    hf.save_pretrained(tmp_path)  # safetensors
    BPETokenizer.train(["some text to learn from"] * 5, vocab_size=V).save(tmp_path)
    loaded = load_model(tmp_path)
    tokens = torch.randint(0, V, (1, 10))
    with torch.no_grad():
        assert (loaded.model(tokens) - hf(tokens).logits).abs().max() < 1e-4
    assert loaded.kind == "hf" and 257 <= loaded.tokenizer.vocab_size <= V
