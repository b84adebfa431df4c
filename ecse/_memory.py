"""Give freed memory back to the operating system between chunks of a computation.

Chunked, checkpointed evaluation (``PET(chunk_tokens=...)``, ``ECSE(chunk_size=...)``)
keeps only one chunk's activations alive at a time, but glibc's ``malloc`` keeps the
freed heap of every chunk resident: small allocations that outlive a chunk (its
outputs, autograd's bookkeeping) split the freed space, so the next chunk cannot reuse
it and the resident memory grows with the number of chunks.  :func:`release_free_memory`
asks ``malloc`` to return the free pages (``malloc_trim(0)``), which keeps the resident
memory at about one chunk's.

Trimming has a price: the next chunk faults the returned pages in again, which can take
as long as the chunk's arithmetic when chunks are small.  So a call trims only when the
resident memory has grown by more than ``slack`` (:data:`TRIM_SLACK_BYTES`) since the
last trim (or since the lowest level seen after it): small computations never trim,
large ones trim about once per ``slack`` of growth and stay within it.  It does nothing
where ``malloc_trim`` does not exist (macOS, Windows, musl), and trims on every call
where the resident size cannot be read.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Callable, Optional

__all__ = ["release_free_memory", "TRIM_SLACK_BYTES"]

#: Resident memory (bytes) that may accumulate above the level after the last trim
#: before :func:`release_free_memory` trims again (128 MiB).
TRIM_SLACK_BYTES = 128 << 20


def _find_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _find_trim()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_floor: Optional[int] = None  # resident bytes after the last trim, or the lowest seen since


def _resident_bytes() -> Optional[int]:
    """The process's resident memory (Linux ``/proc/self/statm``), ``None`` elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory(slack: Optional[int] = None) -> bool:
    """Return the C heap's free pages to the operating system (glibc) if the resident
    memory grew by more than ``slack`` bytes (default :data:`TRIM_SLACK_BYTES`, read at
    each call; 0: trim on every call) since the last trim; a no-op elsewhere.  Returns
    whether it trimmed.

    >>> release_free_memory(slack=1 << 40)  # nothing like a terabyte of growth: no trim
    False
    """
    global _floor
    slack = TRIM_SLACK_BYTES if slack is None else slack
    if _TRIM is None:
        return False
    now = _resident_bytes()
    if slack > 0 and now is not None and (_floor is None or now - _floor <= slack):
        _floor = now if _floor is None else min(_floor, now)  # the first call sets the reference level
        return False
    _TRIM(0)
    _floor = _resident_bytes()
    return True
