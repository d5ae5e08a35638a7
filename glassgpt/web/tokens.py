"""Tokens as a reader can see them.

A byte-level BPE vocabulary stores pieces in GPT-2's byte alphabet ('Ġking' for ' king',
'ä¸Ń' for the three bytes of 中). Each chip carries:
    id, piece (as the vocabulary stores it), text (what it stands for, when its bytes are
    whole UTF-8 characters), bytes (hex, e.g. "E4 B8") and partial (true when its bytes hold
    only part of a character; the page then shows <E4 B8>).
In a prompt, a partial chip also names the character(s) its bytes belong to (`of`).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's map from its 256 printable stand-in characters back to bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def token_bytes(tok, i: int) -> bytes:
    """The bytes token i stands for."""
    piece = tok.id_to_piece(i)
    text = tok.decode([i])
    alphabet = _byte_alphabet()
    if getattr(tok, "kind", "") == "bpe" and piece and all(c in alphabet for c in piece):
        raw = bytes(alphabet[c] for c in piece)
        if raw.decode("utf-8", "replace") == text:  # a byte-level piece: trust the map
            return raw
    return text.encode("utf-8")


def _hex(raw: bytes) -> str:
    return " ".join(f"{b:02X}" for b in raw)


def chip(tok, i: int) -> dict:
    """One token on its own."""
    raw = token_bytes(tok, i)
    try:
        text, partial = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, partial = raw.decode("utf-8", "replace"), True
    return {"id": int(i), "piece": tok.id_to_piece(i), "text": text, "bytes": _hex(raw), "partial": partial}


def chips(tok, ids: list[int]) -> list[dict]:
    """The prompt's tokens; a partial token names the whole character(s) its bytes belong to."""
    out = [chip(tok, i) for i in ids]
    if not any(c["partial"] for c in out):
        return out
    spans, start, joined = [], 0, b""
    for c in out:
        raw = bytes.fromhex(c["bytes"].replace(" ", ""))
        spans.append((start, start + len(raw)))
        start += len(raw)
        joined += raw
    # each character of the decoded prompt, with its byte range
    chars, offset = [], 0
    for ch in joined.decode("utf-8", "replace"):
        n = len(ch.encode("utf-8")) if ch != "\ufffd" else 1
        chars.append((offset, offset + n, ch))
        offset += n
    for c, (a, b) in zip(out, spans):
        if c["partial"]:
            c["of"] = "".join(ch for s, e, ch in chars if s < b and e > a)
    return out
