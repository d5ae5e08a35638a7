"""The README's patching example on SmolLM2-135M-Instruct runs and shows what the README says it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def scope(tmp_path_factory, one_thread):
    import os

    block = re.search(r"### Patching: which layers carry \"Paris\"\?.*?```python\n(.*?)```", README.read_text(), re.S)
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))  # the block saves patching.png
    try:
        names: dict = {}
        exec(compile(block.group(1), "README.md", "exec"), names)
        assert Path("patching.png").stat().st_size > 1000
    finally:
        os.chdir(cwd)
    return names


def test_the_controls(scope):
    r = scope["by_position"]
    assert r.clean == pytest.approx(7.31, abs=0.01) and r.corrupted == pytest.approx(-6.02, abs=0.01)
    assert r.cols == ["The", "·capital", "·of", "·France/·Italy", "·is"]


def test_the_fact_moves_from_the_word_to_the_last_token_at_layer_23(scope):
    n = scope["by_position"].normalised()  # (30 layers, 5 positions)
    assert n[:, :3].abs().max() < 1e-4  # before the changed word: nothing to restore
    assert (n[:24, 3] - 1).abs().max() < 0.05 and n[24:, 3].abs().max() < 0.05
    assert n[:24, 4].abs().max() < 0.05 and (n[24:, 4] - 1).abs().max() < 0.05


def test_one_head_of_layer_23_carries_most_of_it(scope):
    heads = scope["by_head"].normalised()  # (30, 9)
    assert heads.shape == (30, 9)
    best = int(heads.flatten().argmax())
    assert divmod(best, 9) == (23, 4) and heads[23, 4].item() == pytest.approx(0.93, abs=0.02)
    second = heads.flatten().topk(2).values[1].item()
    assert second == pytest.approx(0.33, abs=0.02) and heads[29, 1].item() == pytest.approx(second)


def test_layer_23_attention_and_layer_0_mlp(scope):
    from glassgpt.inspect.patching import activation_patching

    smol, clean, corrupted, metric = scope["smol"], scope["clean"], scope["corrupted"], scope["metric"]
    attn = activation_patching(smol.model, clean, corrupted, metric, "attn_out").normalised()
    mlp = activation_patching(smol.model, clean, corrupted, metric, "mlp_out").normalised()
    assert attn[23, 4].item() == pytest.approx(1.0, abs=0.02) and mlp[0, 3].item() == pytest.approx(1.0, abs=0.02)


def test_a_cell_equals_a_hand_written_hook_on_smollm2(scope):
    smol, clean, corrupted, metric = scope["smol"], scope["clean"], scope["corrupted"], scope["metric"]
    name = "blocks.23.attn.z"
    with torch.no_grad():
        _, cache = smol.model.run_with_cache(clean, names=name)

        def only_head_4(z, _name):
            z = z.clone()
            z[:, 4] = cache[name][:, 4]
            return z

        patched = float(metric(smol.model.run_with_hooks(corrupted, fwd_hooks=[(name, only_head_4)])))
    assert scope["by_head"].grid[23, 4].item() == pytest.approx(patched, abs=1e-3)
