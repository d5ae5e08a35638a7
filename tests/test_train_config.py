"""TrainConfig and the generic config reader: defaults → TOML → --key=value, type-checked; presets survive each path."""

from dataclasses import dataclass

import pytest

from glassgpt import configfile
from glassgpt import train_config as T
from glassgpt.cli import main
from glassgpt.config import preset
from glassgpt.errors import GlassError


def test_overrides_are_typed():
    got = T.parse_overrides(["--max-steps=100", "--lr", "3e-4", "--compile", "--device=cpu", "--d_mlp=none",
                             "--dropout=0.1", "--progress", "false"])
    assert got == {"max_steps": 100, "lr": 3e-4, "compile": True, "device": "cpu", "d_mlp": None, "dropout": 0.1,
                   "progress": False}


@pytest.mark.parametrize("arg, words", [
    ("--max-stpes=5", ["unknown config key", "max_stpes"]),
    ("--max-steps=lots", ["max_steps", "int", "lots"]),
    ("--compile=maybe", ["compile", "bool"]),
    ("--dtype=float8", ["dtype", "float8"]),
    ("--batch-size=0", ["batch_size", "positive"]),
])
def test_bad_overrides_are_one_line_errors(arg, words, capsys):
    assert main(["train", arg]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


def test_toml_file_then_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('max_steps = 7\nlr = 0.01\ndata = "x.txt"\n', encoding="utf-8")
    cfg = T.make_config(str(path), {"lr": 0.02})
    assert (cfg.max_steps, cfg.lr, cfg.data) == (7, 0.02, "x.txt")
    path.write_text('max_steps = "seven"\n', encoding="utf-8")
    with pytest.raises(GlassError, match=r"c.toml: config key max_steps must be int"):
        T.make_config(str(path))
    path.write_text('learning_rate = 1\n', encoding="utf-8")
    with pytest.raises(GlassError, match=r"c.toml: unknown config key 'learning_rate'"):
        T.make_config(str(path))


def test_bundled_configs_are_valid_and_the_default_is_spelled_out():
    for name in T.bundled_configs():
        cfg = T.make_config(name)
        cfg.model_config(65)  # a valid model too
    assert T.make_config("shakespeare-char") == T.TrainConfig()  # the file names the default run
    assert T.TrainConfig().data == "shakespeare" and T.TrainConfig().tokenizer == "char"


# ----------------------------------------------------------------------------- presets (the bug: they were ignored)


def _model(cfg: T.TrainConfig, d_vocab: int) -> dict:
    return cfg.model_config(d_vocab).to_dict()


@pytest.mark.parametrize("name", ["gpt2", "small", "baby", "smollm2-135m"])
def test_preset_survives_python(name):
    want = preset(name).to_dict()
    assert _model(T.TrainConfig(preset=name), want["d_vocab"]) == want


def test_preset_survives_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "small"\nn_layers = 2\n', encoding="utf-8")
    got = T.make_config(str(path)).model_config(65)
    assert got == preset("small", n_layers=2)  # the preset's fields, except the one the file sets
    assert got.name == "small" and got.positions == "learned" and got.d_model == 384


def test_preset_survives_cli(capsys):
    assert main(["train", "--preset=small", "--show-config"]) == 0
    lines = dict(line.split(" = ", 1) for line in capsys.readouterr().out.splitlines())
    small = preset("small")
    assert lines["preset"] == '"small"'
    for key in ("n_layers", "n_heads", "d_model", "n_ctx", "d_mlp"):
        assert lines[key] == str(getattr(small, key)), key
    assert lines["positions"] == '"learned"' and lines["norm"] == '"layernorm"'


def test_show_config_reads_back_as_the_same_run(tmp_path, capsys):
    assert main(["train", "--preset=gpt2", "--n-layers=3", "--show-config"]) == 0
    path = tmp_path / "shown.toml"
    path.write_text(capsys.readouterr().out, encoding="utf-8")
    again = T.make_config(str(path))
    assert again.model_config(50257) == T.make_config(None, {"preset": "gpt2", "n_layers": 3}).model_config(50257)
    assert again.model_config(50257).n_layers == 3 and again.model_config(50257).n_heads == 12


def test_a_set_field_replaces_the_presets_and_unset_ones_do_not():
    cfg = T.TrainConfig(preset="gpt2", d_model=256, n_heads=4)
    got = cfg.model_config(100)
    assert (got.d_model, got.n_heads, got.n_kv_heads, got.d_mlp) == (256, 4, 4, 1024)  # derived from the new sizes
    assert (got.n_layers, got.n_ctx, got.positions, got.attn_bias) == (12, 1024, "learned", True)  # the preset's


# ----------------------------------------------------------------------------- the generic reader


@dataclass
class Knobs:
    steps: int = 10
    rate: float = 0.5
    name: str = "x"
    fast: bool = False
    width: int | None = None


def test_generic_reader_on_any_dataclass(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('steps = 3\nrate = 1\nwidth = "none"\n', encoding="utf-8")
    got = configfile.make(Knobs, path, configfile.parse_overrides(Knobs, ["--fast", "--name", "y", "--width=7"]))
    assert got == Knobs(steps=3, rate=1.0, name="y", fast=True, width=7)
    assert configfile.read_toml(Knobs, path)["width"] is None
    with pytest.raises(GlassError, match="unknown config key 'stepz'"):
        configfile.parse_overrides(Knobs, ["--stepz=1"])
    with pytest.raises(GlassError, match="config key steps must be int, got 1.5"):
        configfile.coerce(Knobs, "steps", 1.5, from_text=False)
    with pytest.raises(GlassError, match="config key fast must be bool"):
        configfile.coerce(Knobs, "fast", "maybe", from_text=True)
    text = configfile.to_toml({"steps": 3, "width": None, "fast": True, "name": "a \"b\""})
    path.write_text(text, encoding="utf-8")
    assert configfile.make(Knobs, path) == Knobs(steps=3, width=None, fast=True, name='a "b"')
