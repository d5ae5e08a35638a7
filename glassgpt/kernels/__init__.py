"""The hand-written kernels (blockdot.c, and step.c around it), built once for this CPU and called from torch.

Decoding reads every weight once; in float32 arithmetic the 4-bit codes cost more instructions
than memory takes to deliver them (benchmarks/matvec.py), and neither torch's packed int4/int8
kernels nor inductor's generated code come close to the read bandwidth on one core. blockdot.c
multiplies GGUF-style blocks with 8-bit integer dot products (AVX-512 VNNI), the way llama.cpp
does, but written here from the maths in its header comment.

`kernel()` says which version this CPU gets, chosen at load time from /proc/cpuinfo's flags:
"avx512-vnni" (64 multiply-adds per instruction), else "avx2" (the same sums through 16-bit pairs),
else "torch" — the same maths in torch (glassgpt.quant's reference path: slower, equal within float
rounding), also used when no C compiler builds the file (once, into glassgpt's cache folder, keyed
by the sources' hash) or when GLASSGPT_KERNEL=torch. `blockdot()` is a torch custom op, so a
compiled decode step (torch.compile) keeps it as one opaque call.

step.c includes blockdot.c, pool.c (worker threads) and attention.c, and adds one whole decode step of a Llama-style
model in one call (glassgpt/kernels/step.py binds it; glassgpt/decode.py uses it): one library.
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

SOURCES = [Path(__file__).with_name(name)  # step.c (last) includes the others
           for name in ("blockdot.c", "pool.c", "attention.c", "step.c")]
ISAS = {  # kernel name: (the C code's isa number, the /proc/cpuinfo flags it needs), best first
    "avx512-vnni": (0, ("avx512f", "avx512bw", "avx512_vnni", "f16c", "fma")),
    "avx2": (1, ("avx2", "f16c", "fma")),
}
CFLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC", "-pthread"]  # each function names its own instruction set

_lib: ctypes.CDLL | None = None
_isa = ""  # the chosen kernel's name, once built
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
    global _why, _isa
    if os.environ.get("GLASSGPT_KERNEL", "") == "torch":
        _why = "GLASSGPT_KERNEL=torch"
        return None
    flags = cpu_flags()
    usable = [name for name, (_, needs) in ISAS.items() if all(f in flags for f in needs)]
    if not usable:
        _why = "the CPU has neither AVX-512 VNNI nor AVX2 with FMA and F16C"
        return None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        _why = "no C compiler (cc) on PATH"
        return None
    key = hashlib.sha256(b"".join(s.read_bytes() for s in SOURCES) + " ".join(CFLAGS).encode()).hexdigest()[:16]
    so = cache_dir() / "kernels" / f"blockdot-{key}.so"
    if not so.is_file():
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        try:
            so.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCES[-1]), "-lm"], check=True, capture_output=True,
                           timeout=120)
            os.replace(tmp, so)
        except (OSError, subprocess.SubprocessError) as e:
            tmp.unlink(missing_ok=True)  # a failed build leaves nothing in the cache folder
            _why = f"building {SOURCES[-1].name} failed ({str(e).splitlines()[0][:120]})"
            return None
    lib = ctypes.CDLL(str(so))
    lib.blockdot.restype = ctypes.c_int
    lib.blockdot.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int] * 6
    _isa = os.environ.get("GLASSGPT_KERNEL", "") if os.environ.get("GLASSGPT_KERNEL", "") in usable else usable[0]
    _why = f"{so.name}, {_isa} ({', '.join(ISAS[_isa][1])} in /proc/cpuinfo)"
    return lib


def library() -> ctypes.CDLL | None:
    global _lib
    if _why == "not tried yet":
        _lib = _build()
    return _lib


def kernel() -> str:
    """Which kernel BlockWeight uses on this machine: "avx512-vnni", "avx2" or "torch"."""
    return _isa if library() is not None else "torch"


def why() -> str:
    """One line: the kernel file used, or why the torch path runs instead."""
    library()
    return _why


def call(x: torch.Tensor, codes: torch.Tensor, dm: torch.Tensor, d_out: int, bits: int, terms: int,
         isa: str = "") -> torch.Tensor:
    """x (n, d_in) float32 contiguous → (n, d_out) float32 through the C kernel (the chosen version, or
    `isa` — tests and benchmarks/matvec.py run each version this CPU has)."""
    y = torch.empty(x.shape[0], d_out)
    rc = _lib.blockdot(codes.data_ptr(), dm.data_ptr(), x.data_ptr(), y.data_ptr(),
                       x.shape[0], x.shape[1], d_out, bits, terms, ISAS[isa or _isa][0])
    if rc:
        raise ValueError(f"blockdot refused sizes n={x.shape[0]} d_in={x.shape[1]} d_out={d_out} bits={bits}")
    return y


def usable() -> list[str]:
    """The kernel versions this CPU can run, best first (empty when the library did not build)."""
    flags = cpu_flags()
    return [name for name, (_, needs) in ISAS.items() if all(f in flags for f in needs)] if library() else []


@torch.library.custom_op("glassgpt::blockdot", mutates_args=())
def blockdot(x: torch.Tensor, codes: torch.Tensor, dm: torch.Tensor, d_out: int, bits: int, terms: int) -> torch.Tensor:
    """The kernel as a torch op (what torch.compile sees): x (n, d_in) float32 → (n, d_out) float32."""
    return call(x.contiguous(), codes, dm, d_out, bits, terms)


@blockdot.register_fake
def _(x, codes, dm, d_out, bits, terms):
    return x.new_empty(x.shape[0], d_out)


# ----------------------------------------------------------------------------- the weights in 2 MB pages

HUGE_PAGE = 2 << 20
MADV_HUGEPAGE, MADV_DONTNEED = 14, 4  # Linux's
SLICE = 1 << 20  # bytes copied between two drops of the source's pages


def huge_pages(model: torch.nn.Module) -> int:
    """Move every block weight's codes and scales (BlockWeight.codes, .dm) into memory the kernel may back
    with 2 MB pages (Linux transparent huge pages, asked with madvise); returns the bytes moved (0 where
    the system has no such memory to offer: nothing is moved then).

    Decoding streams every weight once a token, and while other work contends for the memory one core reads
    4 KB pages markedly slower than 2 MB ones: every 4 KB page is a TLB miss and a place where the hardware
    prefetcher stops (this project's AMD EPYC core, shared with other jobs: about 20 against 30 GB/s, the int4
    step 1.18-1.36x faster; on the quiet machine 33.5 against 34.5 GB/s and 1.00-1.04x: README). A
    converted-weights cache file is mapped in 4 KB pages, so its block weights are copied out, and the
    pages of the mapping they leave are dropped from memory (madvise DONTNEED: a file's pages read back
    the same if touched again), so resident memory stays about the same. Each tensor keeps its own
    storage (no two share one, so a state dict still saves). GLASSGPT_HUGE_PAGES=0: nothing is moved."""
    moves = [(w, name) for w in model.modules() if "codes" in w._buffers and "dm" in w._buffers  # BlockWeights
             for name in ("codes", "dm")]  # (by their buffers: glassgpt.quant imports this module)
    sizes = [(getattr(w, name).numel() * getattr(w, name).element_size() + 63) & ~63 for w, name in moves]
    arena = huge_arena(sum(sizes)) if moves and os.environ.get("GLASSGPT_HUGE_PAGES", "") != "0" else None
    if arena is None:
        return 0
    memory, at = arena
    files = _file_mappings()

    def drop(p0: int, p1: int) -> None:  # the whole 4 KB pages in p0..p1, if a file's (they read back the same)
        p0, p1 = (p0 + 4095) & ~4095, p1 & ~4095
        if p1 > p0 and any(a <= p0 and p1 <= b for a, b in files):
            _libc().madvise(p0, p1 - p0, MADV_DONTNEED)

    for w, name in moves:  # pages a load already touched (a tensor's neighbours fault in with it) go first ...
        old = getattr(w, name)
        drop(old.data_ptr(), old.data_ptr() + old.numel() * old.element_size())
    with torch.no_grad():
        for (w, name), size in zip(moves, sizes):
            old = getattr(w, name)
            n = old.numel() * old.element_size()
            new = torch.frombuffer(memory, dtype=torch.uint8, count=n, offset=at).view(old.dtype).view(old.shape)
            src, dst, p = old.view(-1).view(torch.uint8), new.view(-1).view(torch.uint8), old.data_ptr()
            edges = [0] + list(range((-p % 4096) + SLICE, n, SLICE)) + [n]  # inner edges on page boundaries
            for a, b in zip(edges, edges[1:]):  # ... and each slice's pages once copied: resident memory holds
                dst[a:b].copy_(src[a:b])  # a slice twice, never a tensor (the unembedding is 28 MB)
                drop(p + a, p + b)
            w._buffers[name] = new
            at += size
    model.huge_page_bytes = sum(sizes)  # (benchmarks report it)
    return sum(sizes)


def huge_arena(nbytes: int):
    """(an anonymous private mmap, offset) with nbytes from offset on a 2 MB boundary, madvised for huge pages
    before anything touches it; None where Linux's transparent huge pages are off or absent."""
    import mmap
    import platform

    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")  # "always [madvise] never": the choice in brackets
    if platform.system() != "Linux" or not thp.is_file() or "[never]" in thp.read_text(errors="replace"):
        return None
    memory = mmap.mmap(-1, nbytes + 2 * HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    start = -base % HUGE_PAGE
    if _libc().madvise(base + start, (nbytes + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE):
        memory.close()
        return None
    return memory, start


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _file_mappings() -> list[tuple[int, int]]:
    """The address ranges of this process mapped from files (/proc/self/maps)."""
    out = []
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/"):
                a, b = fields[0].split("-")
                out.append((int(a, 16), int(b, 16)))
    except OSError:
        pass
    return out
