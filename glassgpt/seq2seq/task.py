"""Generated tasks for cross-attention and fixed queries, with their character vocabularies.

- `digits-to-words`: "1947" → "one thousand nine hundred forty-seven" (translation, T5).
- `words-to-digits`: the same pairs the other way round.
- `sorted`: is a string of digits in non-decreasing order? ("1337" yes, "1373" no) — the
  classification task of the fixed-query pooling head.

The data are made on the fly from a seeded generator, so a task is described fully by its
name and a few numbers (saved in a run's config.json). For translation, a fixed 10% of the
numbers from 100 up are held out of training: the benchmark scores exactly those.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..errors import ContextLengthError, GlassError

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
MAX_NUMBER = 999_999


def number_to_words(n: int) -> str:
    """English words for 0 <= n <= 999,999, American style: 1947 → 'one thousand nine hundred forty-seven'."""
    if not 0 <= n <= MAX_NUMBER:
        raise GlassError(f"numbers must lie in [0, {MAX_NUMBER}], got {n}")
    if n == 0:
        return "zero"
    thousands, rest = divmod(n, 1000)
    parts = [_below_thousand(thousands) + " thousand"] if thousands else []
    if rest:
        parts.append(_below_thousand(rest))
    return " ".join(parts)


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    parts = [_ONES[hundreds] + " hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        parts.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    elif rest:
        parts.append(_ONES[rest])
    return " ".join(parts)


def words_to_number(text: str) -> int:
    """The inverse of number_to_words (for checking translations); GlassError if the words are not a number."""
    values = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
    total, current = 0, 0
    for word in text.split():
        for piece in word.split("-"):
            if piece in values:
                current += values[piece]
            elif piece == "hundred":
                current *= 100
            elif piece == "thousand":
                total, current = total + current * 1000, 0
            else:
                raise GlassError(f"not a number word: {piece!r}")
    return total + current


class CharVocab:
    """Characters ↔ ids, with <pad> = 0, <bos> = 1, <eos> = 2 before the characters."""

    def __init__(self, chars: str):
        self.chars = "".join(sorted(set(chars)))
        self.itos = [PAD, BOS, EOS] + list(self.chars)
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, what: str = "input") -> list[int]:
        unknown = sorted({c for c in text if c not in self.chars})
        if unknown:
            raise GlassError(f"{what} has symbol(s) outside the task's vocabulary: "
                             f"{', '.join(repr(c) for c in unknown)} (allowed: {self.chars!r})")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters up to the first <eos>; <pad> and <bos> are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i > self.eos_id:
                out.append(self.itos[i])
        return "".join(out)

    def piece(self, i: int) -> str:
        return self.itos[int(i)]


TRANSLATION_TASKS = ("digits-to-words", "words-to-digits")
CLASSIFICATION_TASKS = ("sorted",)
TASKS = TRANSLATION_TASKS + CLASSIFICATION_TASKS
_DIGITS = "0123456789"
_WORD_CHARS = "".join(sorted(set("".join(_ONES + _TENS) + "hundredthousand -")))


@dataclass
class TaskConfig:
    name: str = "digits-to-words"
    max_number: int = 9999  # translation: numbers 0..max_number
    held_out: float = 0.1  # translation: share of the numbers >= 100 kept out of training
    min_len: int = 2  # sorted: shortest digit string
    max_len: int = 12  # sorted: longest digit string
    split_seed: int = 1234

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise GlassError(f"unknown task {self.name!r}; choose one of: {', '.join(TASKS)}")
        if not 9 <= self.max_number <= MAX_NUMBER:
            raise GlassError(f"max_number must lie in [9, {MAX_NUMBER}], got {self.max_number}")
        if not 0 <= self.held_out < 1:
            raise GlassError(f"held_out must lie in [0, 1), got {self.held_out}")
        if not 1 <= self.min_len <= self.max_len:
            raise GlassError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")

    def to_dict(self) -> dict:
        return asdict(self)


class Task:
    """A task's vocabularies, its limits, and batches of (source, target) examples."""

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.kind = "translation" if cfg.name in TRANSLATION_TASKS else "classification"
        if self.kind == "translation":
            words = self.cfg.name == "digits-to-words"
            self.src_vocab = CharVocab(_DIGITS if words else _WORD_CHARS)
            self.tgt_vocab = CharVocab(_WORD_CHARS if words else _DIGITS)
            self.test_numbers, self.train_numbers = self._split()
            self._held = set(self.test_numbers)
            longest_words = max(len(number_to_words(n)) for n in range(cfg.max_number + 1))
            longest_digits = len(str(cfg.max_number))
            self.src_ctx = longest_digits if words else longest_words
            self.tgt_ctx = (longest_words if words else longest_digits) + 1  # + <bos> (inputs) or <eos> (targets)
            self.labels: list[str] = []
        else:
            self.src_vocab = CharVocab(_DIGITS)
            self.tgt_vocab = None
            self.src_ctx, self.tgt_ctx = cfg.max_len, 0
            self.labels = ["not sorted", "sorted"]

    # -- translation

    def _split(self) -> tuple[list[int], list[int]]:
        g = torch.Generator().manual_seed(self.cfg.split_seed)
        candidates = torch.arange(100, self.cfg.max_number + 1)
        chosen = candidates[torch.randperm(len(candidates), generator=g)[: int(self.cfg.held_out * len(candidates))]]
        test = sorted(chosen.tolist())
        held = set(test)
        return test, [n for n in range(self.cfg.max_number + 1) if n not in held]

    def pair(self, n: int) -> tuple[str, str]:
        digits, words = str(n), number_to_words(n)
        return (digits, words) if self.name == "digits-to-words" else (words, digits)

    def sample_numbers(self, batch_size: int, g: torch.Generator) -> list[int]:
        """Training numbers, with each digit count equally likely, so that short numbers are seen often."""
        n_digits = len(str(self.cfg.max_number))
        lengths = torch.randint(1, n_digits + 1, (batch_size,), generator=g).tolist()
        out = []
        for L in lengths:
            lo, hi = (0 if L == 1 else 10 ** (L - 1)), min(10**L - 1, self.cfg.max_number)
            n = int(torch.randint(lo, hi + 1, (1,), generator=g))
            while n in self._held:
                n = int(torch.randint(lo, hi + 1, (1,), generator=g))
            out.append(n)
        return out

    def translation_batch(self, numbers: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(src, tgt_in, tgt_out): src (B, S) padded with <pad>; tgt_in = <bos> + target; tgt_out = target + <eos>."""
        pairs = [self.pair(n) for n in numbers]
        src = self.encode_sources([s for s, _ in pairs])
        tv = self.tgt_vocab
        tgt = [tv.encode(t, "target") for _, t in pairs]
        T = max(len(t) for t in tgt) + 1
        tgt_in = torch.full((len(tgt), T), tv.pad_id)  # (B, T)
        tgt_out = torch.full((len(tgt), T), tv.pad_id)  # (B, T)
        for i, t in enumerate(tgt):
            tgt_in[i, : len(t) + 1] = torch.tensor([tv.bos_id] + t)
            tgt_out[i, : len(t) + 1] = torch.tensor(t + [tv.eos_id])
        return src, tgt_in, tgt_out

    # -- sorted

    def classification_batch(self, batch_size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(src, labels): half sorted strings; half not — of those, half random, half one adjacent swap away."""
        texts, labels = [], []
        for i in range(batch_size):
            L = int(torch.randint(self.cfg.min_len, self.cfg.max_len + 1, (1,), generator=g))
            digits = torch.randint(0, 10, (L,), generator=g).tolist()
            if i % 2 == 0:
                digits.sort()
            elif i % 4 == 1:
                digits = _one_swap_unsorted(digits, g)
            else:
                while digits == sorted(digits):
                    digits = torch.randint(0, 10, (L,), generator=g).tolist()
            text = "".join(map(str, digits))
            texts.append(text)
            labels.append(int(is_sorted(text)))
        return self.encode_sources(texts), torch.tensor(labels)

    # -- shared

    def encode_sources(self, texts: Sequence[str]) -> torch.Tensor:
        """Source strings → (B, S) ids, padded with <pad>; clear errors for bad symbols or lengths."""
        ids = []
        for text in texts:
            if not text:
                raise GlassError("the input is empty")
            encoded = self.src_vocab.encode(text)
            if len(text) > self.src_ctx:
                raise ContextLengthError(f"the input has {len(text)} characters; the {self.name} model takes at most "
                                         f"{self.src_ctx}")
            ids.append(encoded)
        S = max(len(i) for i in ids)
        src = torch.full((len(ids), S), self.src_vocab.pad_id)  # (B, S)
        for row, i in enumerate(ids):
            src[row, : len(i)] = torch.tensor(i)
        return src


def is_sorted(text: str) -> bool:
    return all(a <= b for a, b in zip(text, text[1:]))


def _one_swap_unsorted(digits: list[int], g: torch.Generator) -> list[int]:
    """A sorted list with one adjacent pair of different digits swapped (a hard negative)."""
    for _ in range(20):
        s = sorted(digits)
        spots = [j for j in range(len(s) - 1) if s[j] != s[j + 1]]
        if spots:
            j = spots[int(torch.randint(0, len(spots), (1,), generator=g))]
            s[j], s[j + 1] = s[j + 1], s[j]
            return s
        digits = torch.randint(0, 10, (len(digits),), generator=g).tolist()
    s = [0] * len(digits)
    s[0] = 1
    return s
