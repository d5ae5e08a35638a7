"""Bad input, part 1: model files (GGUF, Hugging Face folders) and run folders (checkpoints, resume state).

Every size a file claims is checked against the tensors in it and against glassgpt's limits before a
weight is allocated; a damaged resume state is one line pointing at --resume-latest-good. Each case:
failure exit code, one error line naming the file's field, no traceback, no hang, no file changed.
"""

from __future__ import annotations

import base64
import json

import pytest
from bad_input import copy, edit_json, refuse, rewrite_gguf


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))


def generate(model) -> list:
    return ["generate", "--model", model, "--max-new-tokens", "2", "--temperature", "0", "hi"]


# ----------------------------------------------------------------------------- GGUF files

GGUF_CASES = {  # name: (metadata changes, words the error must contain)
    "100k-blocks": ({"llama__block_count": 100_000}, ["bad.gguf", "llama.block_count"]),
    "blocks-not-in-file": ({"llama__block_count": 3}, ["llama.block_count is 3", "2 block(s)"]),
    "context-2^31": ({"llama__context_length": 2**31}, ["llama.context_length", "2,147,483,648"]),
    "context-zero": ({"llama__context_length": 0}, ["llama.context_length", "positive"]),
    "context-a-string": ({"llama__context_length": "long"}, ["llama.context_length", "integer"]),
    "heads-zero": ({"llama__attention__head_count": 0}, ["llama.attention.head_count", "positive"]),
    "heads-not-dividing": ({"llama__attention__head_count": 7}, ["llama.attention.head_count (7)"]),
    "kv-heads-not-dividing": ({"llama__attention__head_count_kv": 3}, ["llama.attention.head_count_kv (3)"]),
    "kv-heads-vs-tensors": ({"llama__attention__head_count_kv": 4}, ["blk.0.attn_k.weight",
                                                                     "llama.attention.head_count_kv = 4"]),
    "embedding-vs-tensors": ({"llama__embedding_length": 128}, ["token_embd.weight", "llama.embedding_length"]),
    "embedding-odd-head": ({"llama__embedding_length": 100}, ["llama.embedding_length", "even for rope"]),
    "ffn-vs-tensors": ({"llama__feed_forward_length": 999}, ["llama.feed_forward_length = 999"]),
    "vocab-vs-tensors": ({"llama__vocab_size": 10}, ["token_embd.weight", "llama.vocab_size = 10"]),
    "vocab-huge": ({"llama__vocab_size": 10**12}, ["llama.vocab_size", "more than glassgpt allows"]),
    "norm-eps-negative": ({"llama__attention__layer_norm_rms_epsilon": -1.0},
                          ["llama.attention.layer_norm_rms_epsilon", "positive"]),
    "rope-dims-partial": ({"llama__rope__dimension_count": 8}, ["partial rope", "rope.dimension_count"]),
}


@pytest.mark.parametrize("case", list(GGUF_CASES))
def test_gguf_metadata(case, assets, tmp_path):
    changes, words = GGUF_CASES[case]
    bad = rewrite_gguf(assets["gguf"], tmp_path / "bad.gguf", **changes)
    refuse(tmp_path, generate(bad), *words, seconds=30)


def test_gguf_missing_hyperparameter(assets, tmp_path):
    bad = rewrite_gguf(assets["gguf"], tmp_path / "bad.gguf", drop=("llama.embedding_length",))
    refuse(tmp_path, generate(bad), "lacks llama.embedding_length")


def test_gguf_more_tokens_than_embeddings(assets, tmp_path):
    from glassgpt.convert.gguf import metadata, read_gguf

    tokens = metadata(read_gguf(assets["gguf"]))["tokenizer.ggml.tokens"]
    bad = rewrite_gguf(assets["gguf"], tmp_path / "bad.gguf", tokenizer__ggml__tokens=tokens + ["extra"],
                       tokenizer__ggml__token_type=[1] * (len(tokens) + 1))
    refuse(tmp_path, generate(bad), "tokenizer.ggml.tokens", f"{len(tokens) + 1:,} tokens")


def test_gguf_truncated(assets, tmp_path):
    data = assets["gguf"].read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 3])
    refuse(tmp_path, generate(tmp_path / "cut.gguf"), "cut.gguf", "truncated or corrupt")


def test_gguf_that_is_text(tmp_path):
    (tmp_path / "notes.gguf").write_text("hello, I am not a model\n")
    refuse(tmp_path, generate(tmp_path / "notes.gguf"), "not a GGUF file")


def test_gguf_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    refuse(tmp_path, generate(tmp_path / "empty.gguf"), "empty.gguf", "not a GGUF file")


def test_gguf_unknown_architecture(assets, tmp_path):
    bad = rewrite_gguf(assets["gguf"], tmp_path / "bad.gguf", general__architecture="mamba")
    refuse(tmp_path, generate(bad), "architecture 'mamba' is not supported")


# ----------------------------------------------------------------------------- Hugging Face folders

HF_CASES = {  # name: (which folder, config.json changes, words)
    "n_positions-1e11-float": ("gpt2_hf", {"n_positions": 1e11}, ["n_positions", "positive integer"]),
    "n_positions-1e11-int": ("gpt2_hf", {"n_positions": 10**11}, ["n_positions", "more than glassgpt allows"]),
    "n_positions-vs-wpe": ("gpt2_hf", {"n_positions": 64}, ["transformer.wpe.weight", "n_positions = 64"]),
    "n_head-zero": ("gpt2_hf", {"n_head": 0}, ["config.json", "n_head must be a positive integer"]),
    "n_layer-huge": ("gpt2_hf", {"n_layer": 100_000}, ["n_layer", "more than glassgpt allows"]),
    "n_layer-vs-tensors": ("gpt2_hf", {"n_layer": 3}, ["n_layer is 3", "2 block(s)"]),
    "n_embd-missing": ("gpt2_hf", {"n_embd": None}, ["config.json", "lacks the field n_embd"]),
    "vocab-a-string": ("gpt2_hf", {"vocab_size": "many"}, ["vocab_size", "positive integer"]),
    "llama-kv-heads": ("llama_hf", {"num_key_value_heads": 3}, ["num_key_value_heads (3)"]),
    "llama-intermediate": ("llama_hf", {"intermediate_size": 64}, ["intermediate_size = 64"]),
    "llama-context-huge": ("llama_hf", {"max_position_embeddings": 2**40}, ["max_position_embeddings"]),
    "unknown-architecture": ("gpt2_hf", {"model_type": "bert"}, ["unsupported architecture 'bert'"]),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hf_config(case, assets, tmp_path):
    which, changes, words = HF_CASES[case]
    folder = copy(assets[which], tmp_path, "model")

    def change(cfg):
        for k, v in changes.items():
            if v is None:
                cfg.pop(k)
            else:
                cfg[k] = v

    edit_json(folder / "config.json", change)
    refuse(tmp_path, generate(folder), *words, seconds=30)


def test_hf_config_not_json(assets, tmp_path):
    folder = copy(assets["gpt2_hf"], tmp_path, "model")
    (folder / "config.json").write_text("{not json")
    refuse(tmp_path, generate(folder), "config.json", "not valid JSON")


def test_hf_truncated_safetensors(assets, tmp_path):
    folder = copy(assets["gpt2_hf"], tmp_path, "model")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    refuse(tmp_path, generate(folder), "model.safetensors", "safetensors")


def test_hf_pickle_only(assets, tmp_path):
    folder = copy(assets["gpt2_hf"], tmp_path, "model")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    refuse(tmp_path, generate(folder), "pickle")


# ----------------------------------------------------------------------------- run folders and resume state


def newest(run):
    return sorted((run / "checkpoints").iterdir())[-1]


def spoil_state(change):
    def spoil(run):
        edit_json(newest(run) / "state.json", change)
    return spoil


def spoil_config(change):
    def spoil(run):
        edit_json(newest(run) / "model_config.json", change)
    return spoil


def _set(path: str, value):
    def change(d):
        keys = path.split(".")
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


RUN_CASES = {  # name: (spoil the run folder, words)
    "step-negative": (spoil_state(_set("step", -5)), ["state.json", "step", "non-negative integer"]),
    "step-a-string": (spoil_state(_set("step", "ten")), ["state.json", "step", "non-negative integer"]),
    "step-not-the-folder": (spoil_state(_set("step", 7)), ["step is 7", "step_0000002"]),
    "rng-garbage": (spoil_state(_set("rng.torch", "%%% not base64 %%%")), ["state.json", "rng"]),
    "rng-wrong-length": (spoil_state(_set("rng.torch", base64.b64encode(b"short").decode())), ["rng"]),
    "rng-python-not-a-state": (spoil_state(_set("rng.python", base64.b64encode(b"[1, 2]").decode())), ["rng"]),
    "rng-missing": (spoil_state(lambda d: d.pop("rng")), ["rng", "missing"]),
    "position-a-float": (spoil_state(_set("data.position", 3.5)), ["data.position", "non-negative integer"]),
    "position-a-string": (spoil_state(_set("data.position", "abc")), ["data.position"]),
    "position-negative": (spoil_state(_set("data.position", -8)), ["data.position"]),
    "betas-out-of-range": (spoil_state(lambda d: d["optimizer"]["param_groups"][0].update(betas=[2, 0.9])),
                           ["betas"]),
    "lr-nan": (spoil_state(lambda d: d["optimizer"]["param_groups"][0].update(lr=float("nan"))), ["lr"]),
    "state-not-json": (lambda run: (newest(run) / "state.json").write_text("{{{"), ["state.json", "corrupt JSON"]),
    "weights-truncated": (lambda run: (newest(run) / "model.safetensors").write_bytes(b"\0" * 64),
                          ["model.safetensors", "sha256"]),
    "config-vs-weights": (spoil_config(_set("d_model", 32)), ["model.safetensors", "embed.W_E",
                                                              "model_config.json:d_model = 32"]),
    "config-heads-zero": (spoil_config(_set("n_heads", 0)), ["model_config.json", "n_heads must be a positive"]),
    "config-layers-vs-weights": (spoil_config(_set("n_layers", 3)), ["model_config.json:n_layers is 3"]),
    "config-unknown-field": (spoil_config(_set("n_experts", 8)), ["model_config.json", "n_experts"]),
    "config-context-huge": (spoil_config(_set("n_ctx", 2**31)), ["model_config.json", "n_ctx"]),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_resume_damaged_run(case, assets, tmp_path):
    spoil, words = RUN_CASES[case]
    run = copy(assets["run"], tmp_path)
    spoil(run)
    line = refuse(tmp_path, ["train", "--resume", run, "--max-steps=3"], *words)
    assert "--resume-latest-good" in line  # the way out is named


@pytest.mark.parametrize("case", ["config-vs-weights", "step-negative", "weights-truncated"])
def test_damaged_run_as_a_model(case, assets, tmp_path):
    spoil, words = RUN_CASES[case]
    run = copy(assets["run"], tmp_path)
    spoil(run)
    refuse(tmp_path, generate(run), *words)


def test_resume_latest_good_skips_the_damage(assets, tmp_path):
    """The control: the same damage, with --resume-latest-good, resumes from the intact checkpoint."""
    from bad_input import cli

    run = copy(assets["run"], tmp_path)
    spoil_state(_set("step", -5))(run)
    result = cli(["train", "--resume", run, "--resume-latest-good", "--max-steps=3"], tmp_path)
    assert result.rc == 0, result.err
    assert "skipping damaged checkpoint" in result.out + result.err
    assert json.loads((run / "checkpoints" / "step_0000003" / "state.json").read_text())["step"] == 3


def test_resume_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    refuse(tmp_path, ["train", "--resume", tmp_path / "notes"], "not a run folder")


def test_resume_train_config_wrong_type(assets, tmp_path):
    run = copy(assets["run"], tmp_path)
    edit_json(run / "train_config.json", _set("max_steps", "many"))
    refuse(tmp_path, ["train", "--resume", run], "train_config.json", "max_steps", "'many'")
