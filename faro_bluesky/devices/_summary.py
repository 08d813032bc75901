"""`SummaryFacet`: per-visit analysis summaries as a readable device, so they land in the run.

The analyzer works beside the RunEngine and can't emit documents into the open run itself;
the plan reads this facet between visits (stream ``analysis``, one event per analysed
visit), so the catalog holds cells found, activity, mask fraction and analysis time of every
visit without the analysis ever blocking acquisition.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Protocol

from ophyd_async.core import AsyncStatus, StandardReadable, soft_signal_r_and_setter


class SummarySource(Protocol):
    """Anything that produces per-visit summaries (the `Analyzer`)."""

    def pop_summaries(self) -> list[Any]:
        """Summaries finished since the last call."""
        ...

    def pending_summaries(self) -> int:
        """How many `pop_summaries` would return now."""
        ...

    def wait_idle(self, timeout: float | None = ...) -> bool:
        """Block until all work so far is done; False on timeout."""
        ...


class SummaryFacet(StandardReadable):
    """Each trigger takes the next finished visit summary; read gives its fields."""

    def __init__(self, source: SummarySource, name: str = "analysis") -> None:
        self.source = source
        self._buffer: deque[Any] = deque()
        with self.add_children_as_readables():
            self.fov, self._set_fov = soft_signal_r_and_setter(int, -1)
            self.t, self._set_t = soft_signal_r_and_setter(int, -1)
            self.phase, self._set_phase = soft_signal_r_and_setter(str, "")
            self.n_cells, self._set_n_cells = soft_signal_r_and_setter(int, 0)
            self.mean_activity, self._set_activity = soft_signal_r_and_setter(float, math.nan)
            self.mask_fraction, self._set_fraction = soft_signal_r_and_setter(float, math.nan)
            self.analysis_ms, self._set_ms = soft_signal_r_and_setter(float, 0.0, units="ms")
            self.error, self._set_error = soft_signal_r_and_setter(str, "")
        super().__init__(name=name)

    def available(self) -> int:
        """How many summaries are ready to be read."""
        return len(self._buffer) + self.source.pending_summaries()

    async def settle(self, timeout: float) -> bool:
        """Wait (off the event loop) until the source has finished its work."""
        return await asyncio.to_thread(self.source.wait_idle, timeout)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Load the next summary into the signals."""
        if not self._buffer:
            self._buffer.extend(self.source.pop_summaries())
        if not self._buffer:
            return
        s = self._buffer.popleft()
        self._set_fov(int(s.fov))
        self._set_t(int(s.t))
        self._set_phase(str(s.phase))
        self._set_n_cells(int(s.n_cells))
        self._set_activity(float(s.mean_activity))
        self._set_fraction(float(s.mask_fraction))
        self._set_ms(float(s.analysis_ms))
        self._set_error(str(s.error))
