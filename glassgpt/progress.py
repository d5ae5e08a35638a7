"""Progress on long steps, on stderr: a tqdm bar on a terminal, plain periodic lines in a log.

    with progress("dequantising", total=len(tensors), unit="tensor") as bar:
        for t in tensors:
            ...
            bar.update(1)

    with status("loading SmolLM2-135M-Instruct"):   # a step of unknown length: a line before, a line after
        ...

stdout stays free for answers (`glassgpt generate` pipes it). GLASSGPT_QUIET=1 silences both.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

LOG_EVERY_S = 5.0  # a plain line at most this often when stderr is not a terminal
QUIET_UNDER_S = 3.0  # in a log, steps quicker than this say nothing


def _quiet() -> bool:
    return os.environ.get("GLASSGPT_QUIET", "") not in ("", "0")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def say(message: str) -> None:
    """One status line on stderr (never on stdout)."""
    if not _quiet():
        print(message, file=sys.stderr, flush=True)


class _Lines:
    """tqdm's update/close for a log: `desc: 40% (39/98 MB)` every LOG_EVERY_S seconds, and once at the end
    if the step took QUIET_UNDER_S or more (quick steps leave scripts' stderr clean)."""

    def __init__(self, desc: str, total: float | None, unit: str, scale: float, unit_name: str):
        self.desc, self.total, self.unit, self.scale, self.unit_name = desc, total, unit, scale, unit_name
        self.n, self.t0 = 0.0, time.monotonic()
        self.last = self.t0

    def _line(self) -> str:
        done = f"{self.n / self.scale:,.0f}"
        if self.total:
            return (f"{self.desc}: {100 * self.n / self.total:3.0f}% ({done}/{self.total / self.scale:,.0f} "
                    f"{self.unit_name})")
        return f"{self.desc}: {done} {self.unit_name}"

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY_S:
            self.last = now
            say(self._line())

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        took = time.monotonic() - self.t0
        if took >= QUIET_UNDER_S:
            say(f"{self._line()}, {took:.1f} s")


class _Nothing:
    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def progress(desc: str, total: float | None = None, unit: str = "it", in_bytes: bool = False):
    """A bar with update(n); in_bytes=True counts bytes and shows MB."""
    if _quiet():
        bar = _Nothing()
    elif on_terminal():
        from tqdm import tqdm

        kw = dict(unit="B", unit_scale=True, unit_divisor=1024) if in_bytes else dict(unit=unit)
        bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, mininterval=0.2, leave=False, **kw)
    else:
        bar = _Lines(desc, total, unit, 1e6 if in_bytes else 1.0, "MB" if in_bytes else unit + "s")
    t0 = time.monotonic()
    try:
        yield bar
    finally:
        bar.close()
        if on_terminal() and not _quiet() and time.monotonic() - t0 >= 1.0:  # the bar vanishes (leave=False);
            say(f"{desc}: done in {time.monotonic() - t0:.1f} s")  # one line stays


@contextmanager
def status(desc: str):
    """A step of unknown length. On a terminal: `desc …` before it and `desc: done in 1.2 s` after it; in a log,
    one line after it, and only if it took QUIET_UNDER_S or more (scripts' stderr stays clean)."""
    t0 = time.monotonic()
    if on_terminal():
        say(f"{desc} …")
    yield
    took = time.monotonic() - t0
    if on_terminal() or took >= QUIET_UNDER_S:
        say(f"{desc}: done in {took:.1f} s")
