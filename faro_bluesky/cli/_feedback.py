"""What the terminal prints of each run in a session: bluesky's BestEffortCallback, tamed.

`BestEffortCallback` is what bluesky users know: a heading with the scan id and uid, the
baseline readings at start and end, and a table of the ``primary`` stream. Made for scans
with plots, it needs three changes for a microscope (docs/decisions/0045-shell-session.md):

- plots off: the image view is napari, and a plot per hinted field of every frame would
  be noise (and matplotlib windows on the RunEngine thread);
- faro experiments (runs whose start document carries ``num_visits``) get no table: one
  row per frame with 20 visit columns is unreadable, and the progress bars already show
  visits, phases and lag (`ProgressDisplay`, drawn off the RunEngine thread);
- other runs (stock ``bp.count``/``bp.scan``, calibration) keep the table, but print at
  most one row per ``row_interval_s``: a 1000-frame burst prints a handful of rows, the
  last one always, and a note of how many were left out, instead of 1000 lines.

Everything runs on the RunEngine thread, so each document costs a dictionary look-up or
two; rows that are not printed cost nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from event_model import unpack_event_page

logger = logging.getLogger(__name__)

_TABLE_STREAM = "primary"  # the stream BestEffortCallback tabulates


class LiveFeedback:
    """A document callback: BestEffortCallback with plots off and a rate-limited table.

    :param row_interval_s: least time between two printed table rows.
    :param clock: monotonic seconds; injectable so tests need not depend on speed.
    """

    def __init__(
        self, *, row_interval_s: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from bluesky.callbacks.best_effort import BestEffortCallback

        # no Qt teleporter: plots are off, and asking matplotlib for its backend would
        # pick (and import) a GUI toolkit
        self.bec = BestEffortCallback(use_teleporter=False)
        """The wrapped callback; ``bec.enable_plots()`` etc. work as in any bluesky session."""
        self.bec.disable_plots()
        self.row_interval_s = row_interval_s
        self._clock = clock
        self._table = True
        self._streams: dict[str, str] = {}
        self._last_row: float | None = None
        self._pending: dict[str, Any] | None = None
        self._events = 0  # table events this run
        self._rows = 0  # of which printed

    def __call__(self, name: str, doc: Any) -> None:
        """Route one document; a failure is logged, never raised into the RunEngine."""
        try:
            self._route(name, doc)
        except Exception:
            logger.exception("LiveFeedback: %s document failed (ignored)", name)

    def _route(self, name: str, doc: Any) -> None:
        if name == "start":
            self._start(doc)
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name", _TABLE_STREAM)
        elif name == "event":
            self._event(doc)
            return
        elif name == "event_page":
            for event in unpack_event_page(doc):
                self._event(event)
            return
        elif name == "stop":
            self._stop(doc)
            return
        self.bec(name, doc)

    def _start(self, doc: Any) -> None:
        self._table = "num_visits" not in doc
        if self._table:
            self.bec.enable_table()
        else:
            self.bec.disable_table()
        self._streams.clear()
        self._last_row = self._pending = None
        self._events = self._rows = 0

    def _event(self, doc: Any) -> None:
        stream = self._streams.get(doc["descriptor"])
        if stream != _TABLE_STREAM:
            if stream == "baseline":
                self.bec("event", doc)
            return
        if not self._table:
            return
        self._events += 1
        now = self._clock()
        if self._last_row is not None and now - self._last_row < self.row_interval_s:
            self._pending = doc  # printed at the stop if no later row comes
            return
        self._row(doc, now)

    def _row(self, doc: Any, now: float) -> None:
        self._last_row, self._pending = now, None
        self._rows += 1
        self.bec("event", doc)

    def _stop(self, doc: Any) -> None:
        if self._pending is not None:
            self._row(self._pending, self._clock())  # the last row always shows
        self.bec("stop", doc)
        if self._events > self._rows:
            print(
                f"({self._events - self._rows} of {self._events} rows not shown: at most "
                f"one row per {self.row_interval_s:g} s; every event is in the catalog)"
            )
