"""Which visits run as one camera sequence (a burst) instead of one snap per frame.

A phase with ``interval=0`` means "as fast as possible". Its consecutive visits at one FOV
with no stimulation, no reference channels and no rest between them change nothing
between frames but the channel, so the camera can take them as one sequence acquisition:
each frame still gets its own event (`Camera.sequence`,
docs/decisions/0024-bursts-as-camera-sequences.md). With several imaging channels the
channel must switch inside the sequence: that needs presets differing only in
sequenceable properties (hardware-triggered light paths), one exposure for all and no
power to set (`sequenceable`); otherwise such visits go step by step
(docs/decisions/0060-channels-inside-camera-sequences.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._model import Channel
from ._schedule import Visit

MAX_BURST_FRAMES = 1_000_000  # one sequence at most; a longer burst is re-armed

CanSequence = Callable[[tuple[str, ...]], bool]
"""Whether the devices can switch between these presets inside a camera sequence."""


def sequenceable(channels: Sequence[Channel], can_sequence: CanSequence | None) -> bool:
    """Whether a burst can take ``channels`` in turn inside one camera sequence."""
    if len(channels) == 1:
        return True
    if can_sequence is None or len({c.exposure for c in channels}) != 1:
        return False  # the sim's (and most) cameras cannot sequence their exposure
    if any(c.power is not None or c.group is not None for c in channels):
        return False  # a power is a separate property set: step by step
    return can_sequence(tuple(c.config for c in channels))


def _burstable(v: Visit, can_sequence: CanSequence | None) -> bool:
    # a rest (wait) before the first visit is kept before the sequence starts
    return not v.stim and not v.ref and sequenceable(v.channels, can_sequence)


def _continues(first: Visit, v: Visit) -> bool:
    return (
        not v.stim
        and not v.ref
        and not v.rests
        and v.p == first.p
        and v.phase_index == first.phase_index
        and v.channels == first.channels
        and v.time == first.time  # interval 0: every visit is due at once
    )


def burst_at(schedule: Sequence[Visit], i: int, can_sequence: CanSequence | None = None) -> int:
    """How many visits from ``schedule[i]`` on form one burst (0 or 1: step by step).

    ``can_sequence`` answers for several channels (`Camera.sequenceable`); without it
    only single-channel visits burst.
    """
    first = schedule[i]
    if not _burstable(first, can_sequence):
        return 0
    n = 1
    while i + n < len(schedule) and n < MAX_BURST_FRAMES and _continues(first, schedule[i + n]):
        n += 1
    return n
