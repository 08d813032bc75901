"""`FrameTiming`: when the camera's last frame was exposed, read into each frame's event.

Closed-loop latency and schedule lag must be measurable from the documents alone, live
and in a replay (issue "Closed loop in 30 ms", point 4): the plans read this device with
every frame, so each event carries its exposure's start and end (epoch s, this machine's
clock).
"""

from __future__ import annotations

from ophyd_async.core import StandardReadable, soft_signal_r_and_setter


class FrameTiming(StandardReadable):
    """``start`` and ``end`` of the camera's latest exposure (epoch s)."""

    def __init__(self, name: str = "") -> None:
        with self.add_children_as_readables():
            self.start, self._set_start = soft_signal_r_and_setter(float, 0.0, units="s")
            self.end, self._set_end = soft_signal_r_and_setter(float, 0.0, units="s")
        super().__init__(name=name)

    def update(self, start: float, end: float) -> None:
        """Record the exposure of the frame just taken."""
        self._set_start(start)
        self._set_end(end)
