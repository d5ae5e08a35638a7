"""Progress: a bar on a terminal, plain lines in a log, silence for quick steps, nothing ever on stdout."""

import pytest

from glassgpt import progress as P


def test_quick_steps_say_nothing_in_a_log(capsys):
    with P.status("loading"):
        pass
    with P.progress("unpacking", total=3) as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")


def test_slow_steps_leave_plain_lines_in_a_log(capsys, monkeypatch):
    monkeypatch.setattr(P, "QUIET_UNDER_S", 0.0)
    monkeypatch.setattr(P, "LOG_EVERY_S", 0.0)
    with P.progress("unpacking x", total=4e6, in_bytes=True) as bar:
        bar.update(1e6)
        bar.update(3e6)
    with P.status("loading x"):
        pass
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "unpacking x:  25% (1/4 MB)" and lines[1] == "unpacking x: 100% (4/4 MB)"
    assert lines[2].startswith("unpacking x: 100% (4/4 MB), ") and lines[3].startswith("loading x: done in")


def test_a_failed_step_leaves_only_its_error(capsys, monkeypatch):
    monkeypatch.setattr(P, "QUIET_UNDER_S", 0.0)
    with pytest.raises(ValueError), P.status("loading"):
        raise ValueError("bad file")
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar(capsys, monkeypatch):
    monkeypatch.setattr(P, "on_terminal", lambda: True)
    with P.progress("dequantising", total=2, unit="tensor") as bar:
        assert type(bar).__name__ == "tqdm"
        bar.update(2)
    with P.status("loading"):
        pass
    err = capsys.readouterr().err
    assert "loading …" in err and "loading: done in" in err


def test_quiet_means_quiet(capsys, monkeypatch):
    monkeypatch.setenv("GLASSGPT_QUIET", "1")
    monkeypatch.setattr(P, "on_terminal", lambda: True)
    with P.status("loading"), P.progress("x", total=1) as bar:
        bar.update(1)
    assert capsys.readouterr().err == ""
