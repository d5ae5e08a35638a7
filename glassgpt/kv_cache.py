"""The KV cache: keys and values of the tokens seen so far, so that generation feeds one new token a step.

    prefill:  the prompt's T tokens → each layer's k, v (B, n_kv_heads, T, d_head) stored
    step:     one token → its k, v appended; attention reads all of them

Attention computes the same thing with or without a cache (tests/test_model.py checks it); the cache
only saves recomputing the keys and values of earlier tokens. Cross-attention (an encoder-decoder's
decoder) stores the source's keys and values once and reuses them at every step.
"""

from __future__ import annotations

import torch


class LayerKV:
    """One attention layer's cached keys and values: (B, n_kv_heads, tokens so far, d_head).

    The buffers grow by doubling, so each generated token costs one small write, not a copy
    of everything cached so far.
    """

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.length = 0

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new tokens' keys and values; returns all of them so far."""
        B, H, n, d = k.shape
        end = self.length + n
        if self._k is None or end > self._k.shape[2]:
            capacity = max(end, 64 if self._k is None else 2 * self._k.shape[2])
            grown_k = k.new_empty(B, H, capacity, d)
            grown_v = v.new_empty(B, H, capacity, d)
            if self._k is not None:
                grown_k[:, :, : self.length] = self.k
                grown_v[:, :, : self.length] = self.v
            self._k, self._v = grown_k, grown_v
        self._k[:, :, self.length : end] = k
        self._v[:, :, self.length : end] = v
        self.length = end
        return self.k, self.v

    def set(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store keys and values computed once (cross-attention over an encoded source)."""
        self._k, self._v, self.length = k, v, k.shape[2]
        return k, v

    def select(self, rows: torch.Tensor) -> None:
        if self._k is not None:
            self._k, self._v = self._k[rows], self._v[rows]


class KVCache:
    """Keys and values of every layer for the tokens seen so far (generation: prefill, then one token a step)."""

    def __init__(self, n_layers: int) -> None:
        self.layers = [LayerKV() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def select(self, rows: torch.Tensor) -> None:
        """Keep only some batch rows (beam search, finished sequences)."""
        for layer in self.layers:
            layer.select(rows)
