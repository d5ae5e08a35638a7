"""The command line: a light import, help for every command, one flag vocabulary, usage vs runtime exit codes."""

import argparse
import subprocess
import sys

import pytest

from glassgpt.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser, path=()):
    """Every (sub)command's parser, with its words: ("chat",), ("inspect", "lens"), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subparsers(sub, (*path, name))


COMMANDS = [words for words, _ in _subparsers(build_parser())]


def test_import_glassgpt_does_not_import_torch():
    code = "import sys, glassgpt, glassgpt.cli; glassgpt.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_public_names_still_import():
    from glassgpt import GPT, ModelConfig, preset

    assert isinstance(GPT(preset("baby", d_vocab=10)).cfg, ModelConfig)
    import glassgpt

    with pytest.raises(AttributeError):
        glassgpt.NoSuchThing  # noqa: B018


def test_help_runs_without_torch():
    """-X importtime lists every module imported: --help must not reach torch (9 s of the old start)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "glassgpt", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "chat" in out.stdout and "doctor" in out.stdout
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "glassgpt.cli" in imported


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_has_a_summary_and_an_example(words, capsys):
    assert main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: glassgpt {' '.join(words)}")
    assert "example" in out and f"glassgpt {words[0]}" in out.split("example")[-1]


def _flags(words) -> set[str]:
    parser = dict(_subparsers(build_parser()))[tuple(words)]
    return {s for a in parser._actions for s in a.option_strings}


GENERATING = [("generate",), ("chat",), ("sample",)]
SAMPLING = {"--max-new-tokens", "--temperature", "--top-k", "--top-p", "--min-p", "--repetition-penalty", "--seed",
            "--stop"}


@pytest.mark.parametrize("words", GENERATING, ids=" ".join)
def test_one_vocabulary_where_text_is_generated(words):
    assert SAMPLING | {"--model", "--device", "--threads"} <= _flags(words)


@pytest.mark.parametrize("words", [("model",), ("export",), ("inspect", "lens"), ("inspect", "attention"),
                                   ("inspect", "embed"), ("inspect", "heads"), ("tour",), ("serve",), ("train",),
                                   ("seq2seq", "translate"), ("seq2seq", "classify")], ids=" ".join)
def test_model_and_threads_wherever_a_model_runs(words):
    flags = _flags(words)
    assert "--model" in flags
    assert "--threads" in flags or words == ("model",) or words == ("export",) or words == ("train",)


@pytest.mark.parametrize("words", [("export",), ("inspect", "lens"), ("tour",), ("train",), ("data", "prepare"),
                                   ("seq2seq", "train")], ids=" ".join)
def test_out_wherever_results_are_written(words):
    assert "--out" in _flags(words)


def test_old_spellings_are_aliases():
    p = build_parser()
    assert p.parse_args(["sample", "--run", "runs/x"]).model == "runs/x"
    assert p.parse_args(["seq2seq", "translate", "--run", "runs/t", "12"]).model == "runs/t"



def test_export_keeps_its_old_positional_form(tmp_path, capsys):
    from glassgpt.cli import main

    assert main(["export", str(tmp_path / "nope"), "--format", "hf", str(tmp_path / "out")]) == 1
    assert "model not found" in capsys.readouterr().err


def test_unknown_flag_shows_the_commands_usage_and_a_guess(capsys):
    assert main(["generate", "hello", "--temprature", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: glassgpt generate") and "did you mean --temperature?" in err


def test_unknown_command_gets_a_guess(capsys):
    assert main(["chta"]) == 2 and "did you mean chat?" in capsys.readouterr().err
    assert main(["models", "pull", "smollm3"]) == 2 and "did you mean smollm2?" in capsys.readouterr().err


def test_unknown_train_key_gets_a_guess(capsys):
    assert main(["train", "--max-stpes=5"]) == 2
    assert "did you mean --max-steps?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["generate", "x", "--top-p", "1.5"], ["generate", "x", "--temperature", "-1"],
                                  ["chat", "--max-new-tokens", "many"], ["serve", "--port", "70000"],
                                  ["generate", "x", "--threads", "0"], ["data", "prepare", "x", "--tokenizer", "wp"]])
def test_bad_flag_values_are_one_line_usage_errors(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"glassgpt {argv[0]}") and err.count("\n") == 1 and "expected" in err or "unknown" in err


def test_a_missing_argument_shows_the_usage(capsys):
    assert main(["sample"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: glassgpt sample") and "--model" in err.splitlines()[-1]


def test_a_failure_while_running_exits_1(tmp_path, capsys):
    assert main(["generate", "x", "--model", str(tmp_path / "missing.gguf")]) == 1
    err = capsys.readouterr().err
    assert "error: model not found" in err and "usage:" not in err


def test_doctor_names_what_the_issue_asks_for(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for key in ("glassgpt", "torch", "threads", "cpu", "device", "default model", "browser"):
        assert any(line.strip().startswith(key) for line in out.splitlines()), key
    assert "vector extensions:" in out


def test_serve_checks_its_port_before_loading_anything(tmp_path, capsys, monkeypatch):
    import socket

    import glassgpt.web

    monkeypatch.setattr(glassgpt.web, "create_app", lambda *a, **k: pytest.fail("loaded before the port check"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", "smollm2"]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1
