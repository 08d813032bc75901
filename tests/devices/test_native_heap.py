"""Memory freed during a run goes back to the system, at most once per INTERVAL_S."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from faro_bluesky.devices import _native_heap
from faro_bluesky.devices._native_heap import INTERVAL_S, give_back_freed_memory


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.fixture
def fresh_clock(monkeypatch):
    """Each test starts as if nothing trimmed yet; the process's own state is restored."""
    monkeypatch.setattr(_native_heap, "_last", float("-inf"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_holes_in_the_heap_leave_resident_memory(fresh_clock):
    # 100 KB blocks (below glibc's mmap threshold: they live in the heap) with a small
    # block after each that stays: freeing the big ones leaves holes glibc keeps resident.
    big, keep = [], []
    for _ in range(1000):
        big.append(np.ones(100_000, np.uint8))
        keep.append(bytes(2000))
    del big
    before = resident_mb()
    assert give_back_freed_memory(now=1e9)
    assert resident_mb() < before - 50, "the ~100 MB of holes stayed resident"
    assert len(keep) == 1000


def test_trims_at_most_once_per_interval(fresh_clock):
    if _native_heap._TRIM is None:
        assert not give_back_freed_memory(now=0.0)
        return
    assert give_back_freed_memory(now=100.0)
    assert not give_back_freed_memory(now=100.0 + INTERVAL_S / 2)
    assert give_back_freed_memory(now=100.0 + INTERVAL_S)
