"""The README's Python example runs and shows what it says it shows."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_ten_line_example_runs():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"## The model in ten lines\s+```python\n(.*?)```", text, re.S).group(1)
    assert len(block.strip().splitlines()) <= 10
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), scope)
    pattern = scope["pattern"]
    assert pattern.shape == (1, 4, 12, 12)
    assert "blocks.0.attn.q" in out.getvalue()


def test_the_first_lines_give_the_two_commands():
    head = README.read_text(encoding="utf-8").splitlines()[:12]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)
