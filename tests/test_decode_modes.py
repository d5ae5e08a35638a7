"""The default weight mode keeps fp32's answers: greedy continuations on varied prompts (slow).

SmolLM2-135M-Instruct from its GGUF, fp32 (the GGUF's weights, dequantised exactly) against
glassgpt.fast.DEFAULT_MODE, which chat and generate use. benchmarks/generate.py reports the
same comparison for every mode.
"""

from __future__ import annotations

import pytest
import torch

from decode_prompts import CHAT, TEXT
from glassgpt import kernels
from glassgpt.chat import Chat
from glassgpt.fast import DEFAULT_MODE
from glassgpt.generate import SampleConfig, decode_step, generate_ids
from glassgpt.load import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    return load_model(None), load_model(None, weights=DEFAULT_MODE)


def _prompts(loaded) -> list[list[int]]:
    texts = list(TEXT) + [Chat(loaded, messages=[{"role": "user", "content": c}]).prompt_text() for c in CHAT]
    return [loaded.tokenizer.encode(t) for t in texts]


def test_there_are_at_least_20_varied_prompts(pair):
    exact, _ = pair
    assert len(_prompts(exact)) >= 20 and any("北京" in t for t in TEXT) and any("def " in t for t in TEXT)


def test_the_default_mode_answers_like_fp32(pair):
    exact, light = pair
    assert DEFAULT_MODE != "fp32"
    cfg = SampleConfig(max_new_tokens=32, temperature=0, stop_ids=tuple(exact.stop_ids))
    worst, differing = 0.0, []
    with torch.inference_mode():
        for n, ids in enumerate(_prompts(exact)):
            a = [int(s[0]) for s in generate_ids(exact.model, [ids], cfg)]
            b = [int(s[0]) for s in generate_ids(light.model, [ids], cfg)]
            if a != b:
                differing.append(n)
            x = torch.tensor([ids + a])
            worst = max(worst, (exact.model(x) - light.model(x)).abs().max().item())
    print(f"{DEFAULT_MODE}: largest logit drift {worst:.4f} over {len(_prompts(exact))} prompts")
    assert decode_step(light.model).ran == ("c" if kernels.usable() else "torch")  # the step generation runs
    assert differing == []
    assert 0 < worst < 0.5  # (logits span about ±30; 0 would mean the mode changed nothing)
