"""Our Sampler's filters against transformers' logits processors, on random logits."""

from __future__ import annotations

import pytest
import torch

from glassgpt.generate import SampleConfig, Sampler

CASES = [
    dict(temperature=0.7),
    dict(temperature=1.3, top_k=17),
    dict(top_k=1),
    dict(top_p=0.9),
    dict(temperature=0.5, top_p=0.3),
    dict(min_p=0.05),
    dict(temperature=2.0, min_p=0.2),
    dict(repetition_penalty=1.3),
    dict(repetition_penalty=0.8, temperature=0.9),
    dict(repetition_penalty=1.2, temperature=0.8, top_k=50, top_p=0.95, min_p=0.02),
]


def hf_processors(c: dict):
    from transformers import (LogitsProcessorList, MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                              TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    procs = []  # transformers' own order: penalty, then temperature, top-k, top-p, min-p
    if c.get("repetition_penalty", 1.0) != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(c["repetition_penalty"]))
    if c.get("temperature", 1.0) != 1.0:
        procs.append(TemperatureLogitsWarper(c["temperature"]))
    if c.get("top_k"):
        procs.append(TopKLogitsWarper(c["top_k"]))
    if c.get("top_p"):
        procs.append(TopPLogitsWarper(c["top_p"]))
    if c.get("min_p"):
        procs.append(MinPLogitsWarper(c["min_p"]))
    return LogitsProcessorList(procs)


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_filters_match_transformers(case, scale):
    torch.manual_seed(CASES.index(case) * 10 + int(scale))
    B, V, T = 4, 500, 12
    logits = torch.randn(B, V) * scale
    previous = torch.randint(0, V, (B, T))
    ours = Sampler(SampleConfig(**case)).filter(logits.clone(), previous)
    theirs = hf_processors(case)(previous, logits.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))
    kept = ~torch.isinf(theirs)
    torch.testing.assert_close(ours[kept], theirs[kept], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(Sampler(SampleConfig(**case)).probs(logits.clone(), previous),
                               torch.softmax(theirs, dim=-1), atol=1e-6, rtol=1e-5)


def test_greedy_is_the_argmax_after_the_repetition_penalty():
    torch.manual_seed(0)
    logits, previous = torch.randn(3, 200), torch.randint(0, 200, (3, 30))
    theirs = hf_processors(dict(repetition_penalty=1.5))(previous, logits.clone())
    probs = Sampler(SampleConfig(temperature=0, repetition_penalty=1.5)).probs(logits, previous)
    assert torch.equal(probs.argmax(-1), theirs.argmax(-1))
    assert torch.equal(probs.sum(-1), torch.ones(3)) and torch.equal(probs.max(-1).values, torch.ones(3))
