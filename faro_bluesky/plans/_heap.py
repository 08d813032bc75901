"""`frozen_heap`: a run's visits are not held up by full garbage collections."""

from __future__ import annotations

import gc

from bluesky.utils import MsgGenerator

__all__ = ["frozen_heap"]


def frozen_heap(plan: MsgGenerator) -> MsgGenerator:
    """Run ``plan`` with the objects that exist when it starts hidden from the collector.

    A full collection scans every object in the process: with bluesky, tiled, pandas and
    the devices loaded that took 125-180 ms, once every few minutes of a run, on whichever
    thread allocated then (the RunEngine's or the analyzer's), and the visits due meanwhile
    started 40-94 ms late (decision 0064). `gc.freeze` moves the long-lived objects out of
    its sight; the run's own objects are collected as usual. Not collected first (that
    full collection would cost every run 120-180 ms): garbage already there waits for a
    collection after the run. Unfrozen when the plan ends, however it ends.
    """
    gc.freeze()
    try:
        return (yield from plan)
    finally:
        gc.unfreeze()
