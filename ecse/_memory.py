"""Give freed memory back to the operating system between chunks of a computation.

Chunked, checkpointed evaluation (``PET(chunk_tokens=...)``, ``ECSE(chunk_size=...)``)
keeps only one chunk's activations alive at a time, but glibc's ``malloc`` keeps the
freed heap of every chunk resident: small allocations that outlive a chunk (its
outputs, autograd's bookkeeping) split the freed space, so the next chunk cannot reuse
it and the resident memory grows with the number of chunks.  :func:`release_free_memory`
asks ``malloc`` to return the free pages (``malloc_trim(0)``), which keeps the resident
memory at about one chunk's; it does nothing where ``malloc_trim`` does not exist
(macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Optional

__all__ = ["release_free_memory"]


def _find_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _find_trim()


def release_free_memory() -> None:
    """Return the C heap's free pages to the operating system (glibc); a no-op elsewhere.

    >>> release_free_memory()
    """
    if _TRIM is not None:
        _TRIM(0)
