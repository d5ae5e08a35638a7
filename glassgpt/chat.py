"""A conversation with a model (G10): the system prompt is the initial context, each user message a turn.

The model only ever sees one string: every message so far, laid out by the model's chat
template (Jinja, from its GGUF or tokenizer_config.json), ending where the assistant's
answer should begin. When that no longer fits the context window (G11), the oldest turns
are dropped, with a notice.

Each turn re-renders the whole conversation, but the model does not re-read it: the session
keeps its KV cache and the ids it holds, and a new turn prefills only the ids after the
longest prefix they share (normally the new user message and the template's markup around it),
so the time to the first token grows with the new tokens, not with the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

from .errors import ContextLengthError, GlassError
from .fast import release_free_memory
from .generate import SampleConfig, new_cache, stream, truncate
from .template import render as render_template

# For models that bring no template (GPT-2, a glassgpt run): plain text turns.
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
PLAIN_STOPS = ("\nUser:", "\nSystem:")
RESERVE = 1024  # tokens of KV cache a session reserves at first (it doubles when a turn needs more)


def render(template: str, messages: list[dict], add_generation_prompt: bool = True, **extra) -> str:
    """Apply a chat template as transformers does, sandboxed and bounded (see glassgpt.template)."""
    return render_template(template, messages, add_generation_prompt=add_generation_prompt, **extra)


@dataclass
class Chat:
    """One session: a model, an optional system prompt and the turns so far.

    on_notice receives messages for the user (turns dropped to fit the context window).
    """

    loaded: object  # glassgpt.load.Loaded
    system: str | None = None
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(max_new_tokens=512, temperature=0.2,
                                                                      top_p=0.9))
    on_notice: Callable[[str], None] | None = None
    messages: list[dict] = field(default_factory=list)  # user / assistant, alternating
    reuse_cache: bool = True  # keep the KV cache between turns
    _cache: object = field(default=None, init=False, repr=False)  # the model's KV cache ...
    _cached_ids: list[int] = field(default_factory=list, init=False, repr=False)  # ... and the ids it holds

    @property
    def template(self) -> str:
        return self.loaded.chat_template or PLAIN_TEMPLATE

    def context(self, messages: list[dict] | None = None) -> list[dict]:
        """Everything the model is shown: the system prompt first, then the turns."""
        turns = self.messages if messages is None else messages
        return ([{"role": "system", "content": self.system}] if self.system else []) + turns

    def prompt_text(self, messages: list[dict] | None = None) -> str:
        return render(self.template, self.context(messages), add_generation_prompt=True,
                      bos_token=self.loaded.bos_token or "", eos_token=self.loaded.eos_token or "")

    def prompt_ids(self) -> list[int]:
        """The rendered conversation as ids; drops the oldest turns until it fits with room to answer."""
        n_ctx = self.loaded.model.cfg.n_ctx
        room = min(self.sample.max_new_tokens, n_ctx // 4)  # tokens kept free for the answer
        ids = self.loaded.tokenizer.encode(self.prompt_text())
        dropped = 0
        while len(ids) + room > n_ctx and len(self.messages) > 1:
            cut = 2 if len(self.messages) > 2 else 1  # a user message and its answer
            del self.messages[:cut]
            dropped += cut
            ids = self.loaded.tokenizer.encode(self.prompt_text())
        if dropped:
            self._notice(f"[dropped the oldest {dropped} message(s) to fit the context window of {n_ctx} tokens]")
        if len(ids) >= n_ctx:
            self.messages.pop()  # the message that cannot fit is not kept either
            raise ContextLengthError(f"this message makes a prompt of {len(ids)} tokens; the context window "
                                     f"holds {n_ctx}")
        return ids

    def ask(self, text: str) -> Iterator[str]:
        """Add a user turn and stream the answer. Closing the iterator early keeps what was said so far."""
        self.messages.append({"role": "user", "content": text})
        ids = self.prompt_ids()
        stops = tuple(self.sample.stop_strings) + (() if self.loaded.chat_template else PLAIN_STOPS)
        cfg = replace(self.sample, stop_ids=tuple(sorted(set(self.sample.stop_ids) | set(self.loaded.stop_ids))),
                      stop_strings=stops)
        answer: list[str] = []
        cache, generated = self._reusable_cache(ids), []
        try:
            for piece in stream(self.loaded.model, self.loaded.tokenizer, ids, cfg, cache=cache, generated=generated):
                answer.append(piece)
                yield piece
                if len(answer) == 1:  # after the first piece is out: what the prefill freed goes back too
                    release_free_memory()
        finally:  # also on Ctrl-C: the partial answer stays in the history
            self.messages.append({"role": "assistant", "content": "".join(answer).strip()})
            if cache is not None:  # an interrupted step may have reached only some layers: keep what all hold
                held = min(layer.length for layer in cache.layers)
                truncate(cache, held)
                self._cached_ids = (ids + generated)[:held]
            release_free_memory()  # what the turn freed in small pieces goes back to the system (0.3-0.5 ms)

    def _reusable_cache(self, ids: list[int]):
        """The session's KV cache, cut back to the longest prefix its ids share with this prompt."""
        if not self.reuse_cache:
            return None
        need = len(ids) + self.sample.max_new_tokens
        if self._cache is None:  # reserved, not touched: a page counts in RSS once a token is written to it
            self._cache, self._cached_ids = new_cache(self.loaded.model, max(need, RESERVE)), []
        elif hasattr(self._cache, "reserve") and need > self._cache.capacity:  # growing copies what it holds:
            self._cache.reserve(min(self.loaded.model.cfg.n_ctx, max(need, 2 * self._cache.capacity)))  # rarely
        shared = 0
        for a, b in zip(self._cached_ids, ids):
            if a != b:
                break
            shared += 1
        truncate(self._cache, shared)
        return self._cache

    def reply(self, text: str) -> str:
        return "".join(self.ask(text))

    def reset(self) -> None:
        self.messages.clear()

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    def set_temperature(self, t: float) -> None:
        self.sample = replace(self.sample, temperature=float(t))

    def _notice(self, text: str) -> None:
        if self.on_notice:
            self.on_notice(text)
