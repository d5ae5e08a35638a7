import pytest
"""Figures: returned as matplotlib Figures holding the data given, with any labels (even "$" and CJK)."""

import torch
from matplotlib.figure import Figure

from glassgpt.inspect.heads import HeadScores
from glassgpt.inspect.lens import Lens
from glassgpt.inspect.plots import (alignment_figure, attention_grid, attention_heatmap, head_scores_figure,
                                    lens_figure, projection_figure, safe, save)
from glassgpt.tokenizer import CharTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_heatmap_holds_the_pattern_and_labels(tmp_path):
    p = torch.softmax(torch.randn(5, 5), -1)
    labels = ["$x", "猫", "·the", "\\n", "a"]
    fig = attention_heatmap(p, labels, title="L0 H1 — 注意力")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    torch.testing.assert_close(torch.tensor(ax.images[0].get_array().data), p)
    assert [t.get_text() for t in ax.get_xticklabels()] == [safe(s) for s in labels]
    path = save(fig, tmp_path / "a.png")  # rendering with glyphs no font has must not fail
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_safe_escapes_mathtext():
    assert safe("$5") == r"\$5" and safe("a\\b") == "a\\\\b"


def test_grid_has_one_panel_per_head(tmp_path):
    p = torch.softmax(torch.randn(6, 4, 4), -1)
    fig = attention_grid(p, list("abcd"), "layer 0")
    assert len(fig.axes) == 6
    torch.testing.assert_close(torch.tensor(fig.axes[5].images[0].get_array().data), p[5])
    save(fig, tmp_path / "g.png")


def test_lens_figure_writes_the_top_guesses(tmp_path):
    tok = CharTokenizer("abc")
    lens = Lens(["embed", "blocks.0"], torch.tensor([[[0], [1]], [[2], [0]]]), torch.tensor([[[0.5], [0.9]], [[0.2], [1.0]]]))
    fig = lens_figure(lens, tok, ["a", "b"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["a", "b", "c", "a"]
    save(fig, tmp_path / "l.png")


def test_score_projection_and_alignment_figures(tmp_path):
    z = torch.rand(3, 2)
    s = HeadScores(distance=z, entropy=z, prev_token=z, first_token=z, induction=z)
    assert len([a for a in head_scores_figure(s).axes if a.images]) == 5
    fig = projection_figure([("man", -1.0), ("woman", 2.0)], "woman − man")
    assert sorted(b.get_width() for b in fig.axes[0].patches) == [-1.0, 2.0]
    fig = alignment_figure({"cosines": [[1, 0.5], [0.5, 1]], "mean_cosine": 0.5, "baseline_mean": 0.0,
                            "baseline_std": 0.1})
    save(fig, tmp_path / "al.png")
    assert (tmp_path / "al.png").stat().st_size > 1000
