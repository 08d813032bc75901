"""`give_back_freed_memory`: a long run's resident memory stays flat (decision 0065).

A run frees as much as it allocates (frames, their compressed chunks, documents), but glibc
keeps what a thread freed in that thread's arena: the camera's, the zarr writers', the
analyzer's and the catalog's threads each grow an arena to their own high-water mark, full
of holes that later allocations of other sizes do not fill. Over 10 000 catalogued frames
the memory in use stayed at ~165 MB after a warm-up while the free space inside the arenas
grew 42 -> 77 MB, and the resident size with it (+62 MB; the benchmark's "not flat").
``malloc_trim(0)`` hands the free pages inside every arena back to the system (~1 ms p50,
5 ms max there, with the interpreter released); frame writers call this after writing,
at most once per `INTERVAL_S` for the whole process.

Not glibc (macOS, Windows, musl): nothing to do, `give_back_freed_memory` returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

__all__ = ["INTERVAL_S", "give_back_freed_memory"]

INTERVAL_S = 2.0
"""Least time between two trims: each costs ~1 ms of one writer thread's time."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()
_lock = threading.Lock()
_last = float("-inf")


def give_back_freed_memory(now: float | None = None) -> bool:
    """Return the heap's free pages to the system unless done less than `INTERVAL_S` ago.

    True if this call trimmed. Safe from any thread; ``now`` (a `time.monotonic` value)
    is for tests.
    """
    global _last
    if _TRIM is None:
        return False
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _last < INTERVAL_S:
            return False
        _last = now
    _TRIM(0)
    return True
