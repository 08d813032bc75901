"""Which visits run as one camera sequence (a burst) instead of one snap per frame.

A phase with ``interval=0`` means "as fast as possible". Its consecutive visits at one FOV
with one imaging channel, no stimulation, no reference channels and no rest between them
change nothing between frames (no stage move, no preset), so the camera can take them as
one sequence acquisition: each frame still gets its own event (`Camera.sequence`,
docs/decisions/0024-bursts-as-camera-sequences.md). Several channels in a burst need the
channel to be switched inside the sequence (hardware-triggered light sources); that is
not done yet, so such visits go step by step.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._schedule import Visit

MAX_BURST_FRAMES = 1_000_000  # one sequence at most; a longer burst is re-armed


def _burstable(v: Visit) -> bool:
    # a rest (wait) before the first visit is kept before the sequence starts
    return len(v.channels) == 1 and not v.stim and not v.ref


def _continues(first: Visit, v: Visit) -> bool:
    return (
        _burstable(v)
        and not v.rests
        and v.p == first.p
        and v.phase_index == first.phase_index
        and v.channels == first.channels
        and v.time == first.time  # interval 0: every visit is due at once
    )


def burst_at(schedule: Sequence[Visit], i: int) -> int:
    """How many visits from ``schedule[i]`` on form one burst (0 or 1: step by step)."""
    first = schedule[i]
    if not _burstable(first):
        return 0
    n = 1
    while i + n < len(schedule) and n < MAX_BURST_FRAMES and _continues(first, schedule[i + n]):
        n += 1
    return n
