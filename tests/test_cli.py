import subprocess
import sys

from glassgpt.cli import main


def test_model_command_prints_the_seeds_structure(capsys):
    assert main(["model", "--preset", "gpt2"]) == 0
    out = capsys.readouterr().out
    assert "124,439,808 parameters" in out
    stages = ["Embedding", "(Attention → MLP) × 12", "Attention", "MLP", "Unembedding", "logits"]
    positions = [out.index(s) for s in stages]
    assert positions == sorted(positions)  # G2's order
    assert "pattern 1024×1024" in out  # T8: context × context per head
    assert "768 → 3072 → 768" in out  # G5: up, then down


def test_model_command_shows_grouped_query_heads(capsys):
    assert main(["model", "--preset", "smollm2-135m"]) == 0
    out = capsys.readouterr().out
    assert "134,515,008" in out and "9 heads sharing 3 key/value heads" in out and "RoPE" in out


def test_bad_preset_is_a_usage_error(capsys):
    assert main(["model", "--preset", "gpt5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glassgpt model: error:") and err.count("\n") == 1
    assert "unknown preset 'gpt5'" in err and "gpt2" in err
    assert "Traceback" not in err


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "glassgpt", "model", "--preset", "baby"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "4 heads" in proc.stdout and "Traceback" not in proc.stderr
