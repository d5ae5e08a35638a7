"""Who runs the model next, and how many may wait: the server's bounds (issue 16 item 5).

- `FairLock`: one forward pass at a time on a model (hooks are module state), shared
  fairly between two kinds of work: a generation's decode step (one token, milliseconds)
  and a full forward pass (an analysis, or a generation's prefill). When both wait, they
  take turns, so a decode step waits behind at most one full pass, never a queue of them.
- `Admission`: at most `cap` heavy requests in the server at once (running or waiting);
  one more gets 429 at once instead of queueing without end. When the last one leaves,
  freed memory is handed back to the operating system (glibc's malloc_trim).
"""

from __future__ import annotations

import ctypes
import gc
import ctypes.util
import threading
from contextlib import contextmanager

DECODE, FULL = "decode", "full"


class FairLock:
    """A lock with two queues (decode steps, full passes) that alternate when both wait.

    `with lock.full():` takes it for a full pass; `with lock.decode():` for a decode step.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._waiting = {DECODE: 0, FULL: 0}
        self._last = FULL

    def _my_turn(self, kind: str) -> bool:
        other = FULL if kind == DECODE else DECODE
        if self._waiting[other] == 0:
            return True
        return self._last != kind  # both wait: the kind that did not run last goes

    @contextmanager
    def hold(self, kind: str):
        with self._cond:
            self._waiting[kind] += 1
            while self._held or not self._my_turn(kind):
                self._cond.wait()
            self._waiting[kind] -= 1
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._last = kind
                self._cond.notify_all()

    def decode(self):
        return self.hold(DECODE)

    def full(self):
        return self.hold(FULL)

    def waiting(self) -> dict:
        with self._cond:
            return dict(self._waiting, held=self._held)


class Busy(Exception):
    """More heavy requests than the server admits (HTTP 429)."""


class Admission:
    """At most `cap` heavy requests in flight; the rest are refused (Busy)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.active = self.admitted = self.refused = 0
        self._lock = threading.Lock()

    @contextmanager
    def admit(self):
        with self._lock:
            if self.active >= self.cap:
                self.refused += 1
                raise Busy(f"{self.active} heavy requests are already running or waiting (the limit is {self.cap}); "
                           "try again in a moment")
            self.active += 1
            self.admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                idle = self.active == 0
            if idle:
                release_memory()

    def snapshot(self) -> dict:
        with self._lock:
            return {"active": self.active, "admitted": self.admitted, "refused": self.refused, "limit": self.cap}


_libc = None
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters (glibc's malloc.h)


def _glibc():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return _libc


def bound_heap(mmap_threshold: int = 1 << 20, arenas: int = 2) -> None:
    """Make freed memory return to the OS: blocks of 1 MB and more (activations) get pages of their
    own, unmapped when freed, and request threads share a few heaps instead of one each. (glibc
    otherwise raises its mmap threshold after large frees and keeps a heap per thread, so the server's
    RSS stays near its peak after a burst of requests.) Process-wide; a no-op without glibc."""
    libc = _glibc()
    if libc and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(M_ARENA_MAX, arenas)


def release_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, so RSS would stay at its peak)."""
    gc.collect()  # the answers' Python objects first, so their arenas can go too
    libc = _glibc()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
