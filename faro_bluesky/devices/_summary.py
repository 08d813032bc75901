"""`SummaryFacet`: per-visit analysis summaries as a readable device, so they land in the run.

The analyzer works beside the RunEngine and can't emit documents into the open run itself;
the plan reads this facet between visits (stream ``analysis``, one event per analysed
visit), so the catalog holds cells found, activity, mask fraction and analysis time of every
visit without the analysis ever blocking acquisition. Its signals are made from
`faro_bluesky.schema.SUMMARY_FIELDS`, so they cannot drift from `VisitSummary`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ophyd_async.core import AsyncStatus, StandardReadable, soft_signal_r_and_setter

from ..schema import SUMMARY_FIELDS, Stream, SummarySource

__all__ = ["SummaryFacet", "SummarySource"]  # SummarySource: the analyzer contract's


class SummaryFacet(StandardReadable):
    """Each trigger takes the next finished visit summary; read gives its fields.

    One signal per `SUMMARY_FIELDS` entry, named like the `VisitSummary` attribute
    (``facet.n_cells``, read as ``analysis-n_cells``).
    """

    def __init__(self, source: SummarySource, name: str = Stream.ANALYSIS) -> None:
        self.source = source
        self._buffer: deque[Any] = deque()
        self._setters: dict[str, Callable[[Any], None]] = {}
        with self.add_children_as_readables():
            for f in SUMMARY_FIELDS:
                signal, self._setters[f.name] = soft_signal_r_and_setter(
                    f.type, f.initial, units=f.units
                )
                setattr(self, f.name, signal)
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
        for f in SUMMARY_FIELDS:
            self._setters[f.name](f.type(getattr(s, f.name)))
