"""Keep freed memory in the process instead of handing it back to the kernel (glibc malloc), for the CPU.

A training step on a CPU allocates and frees the same large activation tensors (8-32 MB each) every step. glibc
serves allocations above its mmap threshold with fresh ``mmap`` pages and gives freed memory back (``munmap``, heap
trimming), so every step page-faults those megabytes in again and the kernel zeroes them: about a quarter of a
2-core machine's time went to the kernel (``sys``) in `maskgit train`. Raising the mmap and trim thresholds makes
glibc reuse its heap instead: `bench train --preset small` went from 21.6 to 25.9 img/s and from 20.8 to 24.9 img/s
in two pairs of runs (2-core AMD EPYC, docs/machines.md, "Training on a CPU"). The process keeps its peak heap
until it exits, which a command that trains or inpaints does anyway.

No torch here: the CLI calls :func:`keep_freed_memory` before it imports torch. From Python, call it once at the
start of a long job.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h: free memory at the heap's top beyond this is given back
M_MMAP_THRESHOLD = -3  # allocations from this size up get their own mmap
THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB; True if done (False where libc is not glibc, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
