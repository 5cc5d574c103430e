"""Memory policy of a feature worker: freed memory is kept for the next allocation instead of returned.

A recording's path allocates and frees arrays of tens to hundreds of MB (filter blocks, spectra, the
whole-recording Lempel-Ziv sequence and index). glibc's malloc serves every block above its mmap threshold
(at most 32 MB) with fresh pages from the kernel and gives them back on free, so each such array is paid for
again in page faults and zeroing: on the 2-core VM this workbench is benchmarked on, ~5 ms of CPU per MB, about
2 of the ~10 CPU s of a 64 ch x 10 min x 500 Hz recording. :func:`keep_freed_memory` tells malloc to take every
block from its heap (``M_MMAP_MAX = 0``) and never to trim the heap (``M_TRIM_THRESHOLD``), so pages are reused
within a recording and from one recording to the next. The price: a worker's resident memory stays at its
largest recording's peak (the peak itself does not change; ``make bench`` reports it). Linux/glibc only; a
no-op elsewhere, and ``KW_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_LOCK = threading.Lock()
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the policy once per process; True if it is in force (glibc, not disabled by the environment)."""
    global _applied
    with _LOCK:
        if _applied is None:
            _applied = _apply()
        return _applied


def _apply() -> bool:
    if os.environ.get("KW_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
