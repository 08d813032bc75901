"""bluesky-tiled-plugins' `TiledWriter` on its own thread, so the RunEngine never waits on it.

Measured here (2 cores, embedded SQLite + DuckDB catalog): with ``batch_size=1`` (needed
for live reading) every frame costs the writer two requests, about 55 ms in all, so a
writer called on the RunEngine's thread would hold up each frame by that much
(ARCHITECTURE decision 5: callbacks never block the RunEngine). Here documents are queued
and written in order by one thread; at a run's stop the caller waits until the run is
written (`flush`), so ``RE(plan)`` returns with the run complete in the catalog.

A writer failure never reaches the RunEngine: the rest of that run is not sent to tiled
(a half-written run must not look complete), the error is logged and kept in `errors`,
and the run can be rebuilt from its raw document log (`Catalog.recover`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from typing import Any

logger = logging.getLogger(__name__)

_EXIT_FLUSH_S = 30.0  # at interpreter exit, wait this long for queued documents


class CatalogWriter:
    """Writes documents to a tiled catalog from a background thread, in order.

    :param client: a writable tiled container client (embedded or remote).
    :param batch_size: TiledWriter's batch size; 1 makes every event readable at once.
    """

    def __init__(self, client: Any, *, batch_size: int = 1) -> None:
        from bluesky_tiled_plugins import TiledWriter

        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1 (1 = live reading)")
        # max_array_size=0: every array read into events (fit residuals, masks) is written
        # as an array node; tiled's SQLite tables can't hold list-valued columns.
        self._writer = TiledWriter(client, batch_size=batch_size, max_array_size=0)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._failed: set[str | None] = set()
        self.errors: dict[str | None, BaseException] = {}
        """Run uid -> the exception that stopped its catalog writing."""
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="faro-catalog-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close, _EXIT_FLUSH_S)

    def put(self, name: str, doc: dict[str, Any], uid: str | None) -> None:
        """Queue document ``doc`` of run ``uid`` for writing; returns at once."""
        if self._closed:
            raise RuntimeError("catalog writer is closed: subscribe the catalog again")
        self._queue.put((name, doc, uid))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every document queued so far is written; False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    @property
    def pending(self) -> int:
        """Documents queued and not yet written (approximate)."""
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            name, doc, uid = item
            if uid in self._failed:
                continue
            try:
                self._writer(name, doc)
            except Exception as exc:
                self._failed.add(uid)
                self.errors[uid] = exc
                logger.exception(
                    "writing a %r document of run %s to the catalog failed; the rest of this "
                    "run goes to its raw document log only (rebuild it with "
                    "catalog.recover())",
                    name,
                    uid,
                )

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued (up to ``timeout`` s), then stop the thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("catalog writer still had %d documents queued at close", self.pending)
