"""The one hand-written kernel (blockdot.c), built once for this CPU and called from torch.

Decoding reads every weight once; in float32 arithmetic the 4-bit codes cost more instructions
than memory takes to deliver them (benchmarks/matvec.py), and neither torch's packed int4/int8
kernels nor inductor's generated code come close to the read bandwidth on one core. blockdot.c
multiplies GGUF-style blocks with 8-bit integer dot products (AVX-512 VNNI), the way llama.cpp
does, but written here from the maths in its header comment.

`kernel()` says which kernel this CPU gets, chosen at load time: "avx512-vnni" when the CPU has
the instructions (/proc/cpuinfo) and a C compiler builds the file (once, into glassgpt's cache
folder, keyed by the source's hash), else "torch" — the same maths in torch (glassgpt.quant's
reference path: slower, equal within float rounding). `blockdot()` is a torch custom op, so a
compiled decode step (torch.compile) keeps it as one opaque call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import torch

from ..fetch import cache_dir

SOURCE = Path(__file__).with_name("blockdot.c")
NEEDS = ("avx512f", "avx512bw", "avx512_vnni", "f16c", "fma")  # /proc/cpuinfo flags the kernel uses
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vnni", "-mf16c", "-mfma", "-ffp-contract=off", "-shared", "-fPIC"]

_lib: ctypes.CDLL | None = None
_why = "not tried yet"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
    except OSError:
        pass
    return set()


def _build() -> ctypes.CDLL | None:
    """The compiled kernel, or None (and _why says why)."""
    global _why
    if os.environ.get("GLASSGPT_KERNEL", "") == "torch":
        _why = "GLASSGPT_KERNEL=torch"
        return None
    missing = [f for f in NEEDS if f not in cpu_flags()]
    if missing:
        _why = f"the CPU lacks {', '.join(missing)}"
        return None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        _why = "no C compiler (cc) on PATH"
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    so = cache_dir() / "kernels" / f"blockdot-{key}.so"
    if not so.is_file():
        try:
            so.parent.mkdir(parents=True, exist_ok=True)
            tmp = so.with_suffix(f".{os.getpid()}.tmp")
            subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], check=True, capture_output=True, timeout=120)
            os.replace(tmp, so)
        except (OSError, subprocess.SubprocessError) as e:
            _why = f"building {SOURCE.name} failed ({str(e).splitlines()[0][:120]})"
            return None
    lib = ctypes.CDLL(str(so))
    lib.blockdot.restype = ctypes.c_int
    lib.blockdot.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 5
    _why = f"{so.name}, built for {', '.join(NEEDS)}"
    return lib


def library() -> ctypes.CDLL | None:
    global _lib
    if _why == "not tried yet":
        _lib = _build()
    return _lib


def kernel() -> str:
    """Which kernel BlockWeight uses on this machine: "avx512-vnni" or "torch"."""
    return "avx512-vnni" if library() is not None else "torch"


def why() -> str:
    """One line: the kernel file used, or why the torch path runs instead."""
    library()
    return _why


def call(x: torch.Tensor, codes: torch.Tensor, dm: torch.Tensor, d_out: int, bits: int, terms: int) -> torch.Tensor:
    """x (n, d_in) float32 contiguous → (n, d_out) float32 through the C kernel (no checks beyond its own)."""
    y = torch.empty(x.shape[0], d_out)
    rc = _lib.blockdot(codes.data_ptr(), dm.data_ptr(), x.data_ptr(), y.data_ptr(),
                       x.shape[0], x.shape[1], d_out, bits, terms)
    if rc:
        raise ValueError(f"blockdot refused sizes n={x.shape[0]} d_in={x.shape[1]} d_out={d_out} bits={bits}")
    return y


@torch.library.custom_op("glassgpt::blockdot", mutates_args=())
def blockdot(x: torch.Tensor, codes: torch.Tensor, dm: torch.Tensor, d_out: int, bits: int, terms: int) -> torch.Tensor:
    """The kernel as a torch op (what torch.compile sees): x (n, d_in) float32 → (n, d_out) float32."""
    return call(x.contiguous(), codes, dm, d_out, bits, terms)


@blockdot.register_fake
def _(x, codes, dm, d_out, bits, terms):
    return x.new_empty(x.shape[0], d_out)
