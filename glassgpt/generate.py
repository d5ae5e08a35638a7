"""Generation: logits → probabilities → the next token, again and again (G1, G12).

Prefill the prompt once (GPT.forward), then feed one token a step with the KV cache (for a decoder-only
model and unpadded prompts, through glassgpt.decode's lean step and static cache). The `Sampler`
turns the last position's logits into a choice: repetition penalty, temperature
(0 = greedy), top-k, top-p, min-p — in that order, as Hugging Face applies them.

API (stable; other modules build on it):
    SampleConfig                                  # every sampling knob, a dataclass
    Sampler(cfg).filter(logits, previous)         # (B, V) logits → filtered logits (-inf where cut)
    Sampler(cfg).probs(logits, previous)          # (B, V) → probabilities after every filter
    generate_ids(model, prompts, cfg)             # yields (B,) tensors of new ids, one per step
    stream(model, tokenizer, prompt, cfg)         # yields text pieces as they are decided
    sliding_stream(model, tokenizer, prompt, cfg) # the same, sliding past the context window
    generate(model, tokenizer, prompt, cfg)       # the whole continuation as one string
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import torch

from .decode import DecodeStep, StaticKVCache, cache_dtype, supports
from .errors import GlassError
from .model import GPT, softmax_with_temperature


@dataclass
class SampleConfig:
    max_new_tokens: int = 200
    temperature: float = 1.0  # 0: greedy (always the most likely token)
    top_k: int | None = None  # keep the k most likely tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches p (nucleus)
    min_p: float | None = None  # keep tokens at least min_p × the top token's probability
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the context
    seed: int | None = None
    stop_strings: Sequence[str] = ()
    stop_ids: Sequence[int] = ()

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise GlassError(f"{name} must be a finite number, got {value!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise GlassError(f"max_new_tokens must be a non-negative integer, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:
            raise GlassError(f"temperature must be >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise GlassError(f"top_k must be a positive integer, got {self.top_k!r}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise GlassError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise GlassError(f"min_p must be in [0, 1], got {self.min_p!r}")
        if not self.repetition_penalty > 0:
            raise GlassError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}")


class Sampler:
    """Logits → the next token. Each filter sets the logits it cuts to -inf."""

    def __init__(self, cfg: SampleConfig):
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None

    def filter(self, logits: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """logits: (B, V); previous: (B, T) ids already in the context (for the repetition penalty)."""
        present = None
        if previous is not None and self.cfg.repetition_penalty != 1.0:
            present = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, previous, True)
        return self._filter(logits, present)

    def probs(self, logits: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.filter(logits, previous)
        if self.cfg.temperature == 0:
            return softmax_with_temperature(logits, 0)  # greedy: one-hot, ties to the lowest id
        return torch.softmax(logits, dim=-1)

    def _filter(self, logits: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        logits = logits.float()
        if present is not None and cfg.repetition_penalty != 1.0:
            penalised = torch.where(logits < 0, logits * cfg.repetition_penalty, logits / cfg.repetition_penalty)
            logits = torch.where(present, penalised, logits)
        if cfg.temperature == 0:
            return logits  # greedy: the argmax is all that matters
        if cfg.temperature != 1.0:
            logits = logits / cfg.temperature  # G12: e^(x/T) / Σ e^(x/T)
        if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
            kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if cfg.top_p is not None and cfg.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1)  # ascending
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            cut = cumulative <= 1 - cfg.top_p
            cut[..., -1] = False  # always keep the most likely token
            logits = logits.masked_fill(cut.scatter(1, order, cut), float("-inf"))
        if cfg.min_p is not None and cfg.min_p > 0:
            probs = logits.softmax(dim=-1)
            floor = cfg.min_p * probs.max(dim=-1, keepdim=True).values
            logits = logits.masked_fill(probs < floor, float("-inf"))
        return logits

    def sample(self, logits: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """(B, V) logits → (B,) chosen ids."""
        logits = self._filter(logits, present)
        if self.cfg.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)


@torch.inference_mode()
def generate_ids(
    model: GPT,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    cfg: SampleConfig,
    pad_id: int = 0,
    cache=None,
) -> Iterator[torch.Tensor]:
    """Yield the next ids of a batch of prompts, one (B,) tensor per step (-1 for rows already stopped).

    Prompts of different lengths are left-padded; padding is masked out of attention and
    positions count from each prompt's first real token. Generation ends at max_new_tokens,
    when every row has produced a stop id, or at the end of the context window.

    cache: a KV cache (new_cache(model, capacity) or model.new_cache()) that already holds the keys and values of the first
    cache.length tokens of the one prompt (a chat's earlier turns): only the rest is prefilled.
    Afterwards it holds the prompt and every generated token but the last.
    """
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist() if prompts.dim() == 2 else [prompts.tolist()]
    prompts = [list(p) for p in prompts]
    if not prompts or any(len(p) == 0 for p in prompts):
        raise GlassError("every prompt needs at least one token")
    if cache is not None:
        yield from _continue(model, prompts, cfg, cache)
        return
    B, T = len(prompts), max(len(p) for p in prompts)
    n_ctx = model.cfg.n_ctx
    if T > n_ctx:
        raise GlassError(f"the prompt has {T} tokens but the context window holds {n_ctx}")
    device = model.embed.W_E.device
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    key_mask = torch.zeros(B, T, dtype=torch.bool)
    present = torch.zeros(B, model.cfg.d_vocab, dtype=torch.bool)
    for row, p in enumerate(prompts):
        tokens[row, T - len(p):] = torch.tensor(p)
        key_mask[row, T - len(p):] = True
        present[row, torch.tensor(p)] = True
    tokens, key_mask, present = tokens.to(device), key_mask.to(device), present.to(device)
    padded = bool((~key_mask).any())
    positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
    sampler = Sampler(cfg)
    stop = torch.tensor(sorted(set(cfg.stop_ids)), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)

    lean = supports(model) and not padded  # the lean step (glassgpt.decode): one unpadded token a step
    cache = new_cache(model, min(n_ctx, T + cfg.max_new_tokens), B) if lean else model.new_cache()
    logits = model(tokens, cache=cache, positions=positions, key_mask=key_mask if padded else None,
                   last_only=True)[:, -1]
    step_fn = decode_step(model) if lean else None
    next_pos = positions[:, -1:] + 1  # (B, 1)
    for step in range(cfg.max_new_tokens):
        ids = sampler.sample(logits, present if cfg.repetition_penalty != 1.0 else None).to(device)  # (B,)
        ids = torch.where(done, torch.full_like(ids, -1), ids)
        yield ids
        done = done | torch.isin(ids, stop)
        if bool(done.all()) or cache.length >= n_ctx or step == cfg.max_new_tokens - 1:
            return
        fed = ids.clamp(min=0).unsqueeze(1)  # (B, 1)
        present[torch.arange(B, device=device), fed[:, 0]] = True
        if step_fn is not None:
            logits = step_fn(fed, cache)
            continue
        if padded:
            key_mask = torch.cat([key_mask, torch.ones(B, 1, dtype=torch.bool, device=device)], dim=1)
        logits = model(fed, cache=cache, positions=next_pos, key_mask=key_mask if padded else None,
                       last_only=True)[:, -1]
        next_pos = next_pos + 1


def new_cache(model: GPT, capacity: int, batch: int = 1):
    """The KV cache generation uses: a StaticKVCache of `capacity` tokens for the lean step, else the model's own."""
    if not supports(model):
        return model.new_cache()
    return StaticKVCache(model.cfg, min(capacity, model.cfg.n_ctx), batch, dtype=cache_dtype(model),
                         device=model.embed.W_E.device)


def decode_step(model: GPT) -> DecodeStep:
    """The model's lean decode step, made once."""
    step = model.__dict__.get("_decode_step")
    if step is None:
        step = model.__dict__["_decode_step"] = DecodeStep(model)
    return step


def _continue(model: GPT, prompts: list[list[int]], cfg: SampleConfig, cache) -> Iterator[torch.Tensor]:
    """generate_ids for one prompt whose first cache.length tokens are already in the cache."""
    if len(prompts) != 1:
        raise GlassError("a reused KV cache serves one prompt at a time")
    ids = prompts[0]
    n_ctx = model.cfg.n_ctx
    if len(ids) > n_ctx:
        raise GlassError(f"the prompt has {len(ids)} tokens but the context window holds {n_ctx}")
    if cache.length >= len(ids):
        truncate(cache, len(ids) - 1)  # the last prompt token runs again: its logits pick the first answer token
    device = model.embed.W_E.device
    present = torch.zeros(1, model.cfg.d_vocab, dtype=torch.bool, device=device)
    present[0, torch.tensor(ids, device=device)] = True
    sampler = Sampler(cfg)
    stop = set(cfg.stop_ids)
    lean = isinstance(cache, StaticKVCache)
    if lean:
        cache.reserve(min(n_ctx, len(ids) + cfg.max_new_tokens))  # room for this turn, before its first step
    logits = model(torch.tensor([ids[cache.length:]], device=device), cache=cache, last_only=True)[:, -1]
    step_fn = decode_step(model) if lean else None
    for step in range(cfg.max_new_tokens):
        token = sampler.sample(logits, present if cfg.repetition_penalty != 1.0 else None).to(device)  # (1,)
        yield token
        if int(token[0]) in stop or cache.length >= n_ctx or step == cfg.max_new_tokens - 1:
            return
        present[0, token] = True
        logits = step_fn(token.view(1, 1), cache) if lean else model(token.view(1, 1), cache=cache)[:, -1]


def truncate(cache, n: int) -> None:
    """Forget all but the first n tokens of a KV cache (a chat whose history changed after them)."""
    for layer in cache.layers:
        layer.length = min(layer.length, n)


class TextStream:
    """Token ids in, text pieces out: holds back incomplete UTF-8 characters and possible stop strings."""

    def __init__(self, tokenizer, stop_strings: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded text already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        for s in self.stop_strings:
            at = text.find(s, max(0, self.emitted - len(s)))
            if at != -1:
                self.stopped = True
                return self._take(text[:at])
        safe = len(text)
        if text.endswith("\ufffd"):  # an unfinished multi-byte character
            safe = len(text.rstrip("\ufffd"))
        for s in self.stop_strings:  # a stop string may be starting at the end
            for n in range(min(len(s) - 1, safe - self.emitted), 0, -1):
                if text[safe - n:safe] == s[:n]:
                    safe -= n
                    break
        return self._take(text[:safe])

    def flush(self) -> str:
        if self.stopped:
            return ""
        return self._take(self.tokenizer.decode(self.ids))

    def _take(self, text: str) -> str:
        piece = text[self.emitted:]
        self.emitted = max(self.emitted, len(text))
        return piece


def stream(model: GPT, tokenizer, prompt: str | Sequence[int], cfg: SampleConfig, cache=None,
           generated: list[int] | None = None) -> Iterator[str]:
    """Yield the continuation of one prompt as text pieces, as soon as each is certain.

    cache: see generate_ids. generated: if given, receives every new token id as it is chosen.
    """
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
    stop_ids = set(cfg.stop_ids)
    out = TextStream(tokenizer, cfg.stop_strings)
    for step_ids in generate_ids(model, [ids], cfg, cache=cache):
        token = int(step_ids[0])
        if generated is not None and token >= 0:
            generated.append(token)
        if token < 0 or token in stop_ids:
            break
        piece = out.push(token)
        if piece:
            yield piece
        if out.stopped:
            return
    tail = out.flush()
    if tail:
        yield tail


def sliding_stream(model: GPT, tokenizer, prompt: str, cfg: SampleConfig) -> Iterator[str]:
    """Text pieces past the context window: when it is full, continue from the last half of the text so far."""
    n_ctx, text, left, window = model.cfg.n_ctx, "", cfg.max_new_tokens, 0
    while left > 0:
        ids = tokenizer.encode(prompt + text)[-max(1, n_ctx // 2):] if text or window else tokenizer.encode(prompt)
        n = min(left, n_ctx - len(ids))
        seed = None if cfg.seed is None else cfg.seed + window
        produced = 0
        for piece in stream(model, tokenizer, ids, replace(cfg, max_new_tokens=n, seed=seed)):
            text += piece
            produced += 1
            yield piece
        if produced == 0 or any(s in text for s in cfg.stop_strings):
            return
        left -= n
        window += 1


def generate(model: GPT, tokenizer, prompt: str | Sequence[int], cfg: SampleConfig | None = None) -> str:
    """The whole continuation of a prompt as one string."""
    return "".join(stream(model, tokenizer, prompt, cfg or SampleConfig()))


def generate_batch(model: GPT, tokenizer, prompts: Sequence[str], cfg: SampleConfig) -> list[str]:
    """Continuations of several prompts at once (one forward pass per step for the whole batch)."""
    encoded = [tokenizer.encode(p) for p in prompts]
    streams = [TextStream(tokenizer, cfg.stop_strings) for _ in prompts]
    texts = ["" for _ in prompts]
    finished = [False] * len(prompts)
    for step_ids in generate_ids(model, encoded, cfg):
        for row, token in enumerate(step_ids.tolist()):
            if finished[row]:
                continue
            if token < 0 or token in cfg.stop_ids:
                finished[row] = True
                continue
            texts[row] += streams[row].push(token)
            finished[row] = streams[row].stopped
        if all(finished):
            break
    return [text + s.flush() for text, s in zip(texts, streams)]
