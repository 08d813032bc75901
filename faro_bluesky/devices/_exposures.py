"""`EXPOSURES`: when work that is not due yet may take the interpreter (decision 0067).

Between two exposures the RunEngine composes the last frame's event, sets the next preset
and triggers: a few ms of Python that decides how soon the camera exposes again. A thread
of the same process that computes meanwhile (the analyzer segmenting the frame just read
out) takes the interpreter from it every switch interval: with analysis on, closed-loop
visits back to back had 2-3 ms more between their frames than without. During an exposure
the RunEngine only waits, so work that can wait a few ms waits for the next exposure to
start (`ExposureGate.wait_past`), as the zarr writer's writes do. The gate also opens when
the plan waits for such work (a stimulation waits for its mask: no exposure comes until
the mask is there), and a waiter gives up after its timeout.

While the closed loop computes a mask (from the segmenter's plane, read out during the
next exposure), that exposure is the mask's: frame writes skip it and go with the next
one (`mask_pending`, decision 0069), so the mask is out before the exposure ends.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

__all__ = ["EXPOSURES", "ExposureGate"]


MASK_HOLD_S = 0.25
"""Longest a mask computation keeps `mask_pending` true (a mask that never comes)."""


class ExposureGate:
    """Counts exposure starts (and demands); lets a thread wait for the next one."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0
        self._listeners: list[Callable[[], None]] = []
        self._mask_until = 0.0

    @property
    def mask_pending(self) -> bool:
        """Whether the closed loop is computing a mask now (`mask_started`, `mask_out`)."""
        return time.monotonic() < self._mask_until

    def mask_started(self) -> None:
        """A mask is being computed from a frame just read out (any thread)."""
        self._mask_until = time.monotonic() + MASK_HOLD_S

    def mask_out(self) -> None:
        """The mask is out (or will not come)."""
        self._mask_until = 0.0

    @property
    def generation(self) -> int:
        """Exposures started (and demands made) so far in this process."""
        return self._generation

    def open(self) -> None:
        """An exposure starts, or the plan now waits for held work: let it go."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` each time the gate opens (on the camera's thread: be quick).

        Returns the function that removes it.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def wait_past(self, seen: int, timeout: float) -> bool:
        """Wait until the gate opened after ``seen`` (a `generation`); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._generation != seen, timeout)


EXPOSURES = ExposureGate()
"""The process's gate: every camera opens it as an exposure starts."""
