"""Turning a source into a target: greedy and beam search over the decoder, with KV caches.

The source is encoded once. Each decoder layer caches two things: its own keys and values
for the target tokens so far (they grow by one a step), and the keys and values of the
encoded source for cross-attention (computed on the first step, then only read).
<pad> and <bos> are never chosen, and a sequence that reaches the decoder's length limit is
made to end there with <eos> (training targets always fit, <eos> included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import EncoderDecoder


def _allowed(logits: torch.Tensor, pad_id: int, bos_id: int, eos_id: int, last: bool) -> torch.Tensor:
    """-inf on <pad> and <bos>, and on everything but <eos> at the last step the decoder can take."""
    logits = logits.clone()
    if last:
        keep = logits[..., eos_id].clone()
        logits.fill_(float("-inf"))
        logits[..., eos_id] = keep
    else:
        logits[..., [pad_id, bos_id]] = float("-inf")
    return logits


@torch.no_grad()
def greedy(model: EncoderDecoder, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int | None = None,
           use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The most likely token at every step, for a batch. src: (B, S).

    Returns (tokens (B, L) without <bos>, padded with <eos> after the end; logits (B, L, d_vocab)
    after the -inf of the disallowed tokens).
    use_cache=False reruns the decoder on the whole prefix each step (the slow reference).
    """
    B = src.shape[0]
    max_len = min(max_len or model.cfg.tgt_ctx, model.cfg.tgt_ctx)  # the decoder reads at most tgt_ctx tokens
    memory, src_mask = model.encode(src)
    cache, cross_cache = model.new_caches() if use_cache else (None, None)
    tgt = torch.full((B, 1), bos_id, device=src.device)  # (B, 1): <bos>
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    steps, step_logits = [], []
    for t in range(max_len):
        step_in = tgt[:, -1:] if use_cache else tgt
        logits = model.decode(step_in, memory, src_mask, cache, cross_cache)[:, -1]  # (B, d_vocab)
        logits = _allowed(logits, model.pad_id, bos_id, eos_id, last=t == max_len - 1)
        nxt = torch.where(done, eos_id, logits.argmax(-1))  # (B,)
        steps.append(nxt)
        step_logits.append(logits)
        done |= nxt == eos_id
        if bool(done.all()):
            break
        tgt = torch.cat([tgt, nxt[:, None]], dim=1)  # (B, t + 1)
    return torch.stack(steps, dim=1), torch.stack(step_logits, dim=1)


@dataclass
class Hypothesis:
    tokens: list[int]  # without <bos>, ending in <eos> when finished
    logprob: float  # Σ log p(token | source, earlier tokens)


@torch.no_grad()
def beam_search(model: EncoderDecoder, src: torch.Tensor, bos_id: int, eos_id: int, beam: int = 4,
                max_len: int | None = None) -> list[Hypothesis]:
    """The `beam` best-scoring continuations kept at every step, for one source (1, S).

    Returns up to `beam` hypotheses, best first, scored by their total log-probability.
    A hypothesis can only lose probability by growing, so the search stops as soon as `beam`
    finished ones all score at least as well as the best live one.
    """
    if src.dim() == 1:
        src = src.unsqueeze(0)
    if src.shape[0] != 1:
        raise ValueError("beam_search takes one source at a time")
    max_len = min(max_len or model.cfg.tgt_ctx, model.cfg.tgt_ctx)
    memory, src_mask = model.encode(src)
    cache, cross_cache = model.new_caches()
    live = [Hypothesis([], 0.0)]
    finished: list[Hypothesis] = []
    step_in = torch.tensor([[bos_id]], device=src.device)  # (n_live, 1)
    for t in range(max_len):
        n = len(live)
        logits = model.decode(step_in, memory.expand(n, -1, -1), src_mask.expand(n, -1), cache, cross_cache)
        logits = _allowed(logits[:, -1], model.pad_id, bos_id, eos_id, last=t == max_len - 1)
        logp = torch.log_softmax(logits, dim=-1)  # (n_live, d_vocab)
        total = torch.tensor([h.logprob for h in live]).unsqueeze(1) + logp  # (n_live, d_vocab)
        scores, flat = total.flatten().topk(min(2 * beam, total.numel()))
        rows, next_live = [], []
        for score, index in zip(scores.tolist(), flat.tolist()):
            if score == float("-inf"):
                break
            row, token = divmod(index, logp.shape[-1])
            hyp = Hypothesis(live[row].tokens + [token], score)
            if token == eos_id:
                finished.append(hyp)
            elif len(next_live) < beam:
                next_live.append(hyp)
                rows.append(row)
        finished = sorted(finished, key=lambda h: -h.logprob)[:beam]
        if not next_live or (len(finished) >= beam and finished[-1].logprob >= next_live[0].logprob):
            break
        select = torch.tensor(rows, device=src.device)
        cache.select(select)
        cross_cache.select(select)
        live = next_live
        step_in = torch.tensor([[h.tokens[-1]] for h in live], device=src.device)  # (n_live, 1)
    return finished or sorted(live, key=lambda h: -h.logprob)
