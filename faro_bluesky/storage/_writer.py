"""bluesky-tiled-plugins' `TiledWriter` in batches by count and by time, on a thread.

Measured here (2 cores, embedded SQLite catalog, 512² frames): with ``batch_size=1`` every
frame costs the writer two requests, ~55 ms in all, so the writer ingested ~9 frames/s
and a run could not end before it caught up (a 10 ms-exposure time-lapse paced at ~120 ms
per frame). Now documents are queued (bounded) and handed to a `TiledWriter` whose events
and stream datums are written every ``max_delay`` seconds or every ``batch_size`` events,
whichever comes first: a live reader sees a running run at most ~``max_delay`` behind, and
one write request carries hundreds of frames (docs/decisions/0023-catalog-batches.md). At
a run's stop the caller waits until the run is written (`flush`), so ``RE(plan)`` returns
with the run complete in the catalog.

A writer failure never reaches the RunEngine: the rest of that run is not sent to tiled
(a half-written run must not look complete), the error is logged and kept in `errors`,
and the run can be rebuilt from its raw document log (`Catalog.recover`).

The same logic keeps each run's phases in its tiled metadata (`_phases`): written with
the run's first batch and again with the batch holding a new phase's first frame (a phase
chosen while running), never between a run's start and its streams.

That logic is `RunBatches`, which owns no thread: `CatalogWriter` drives it from a thread
of this process (remote servers, DuckDB tables), the writer process drives it in a child
process for an embedded SQLite catalog, whose tiled server code would otherwise hold our
interpreter (docs/decisions/0059-catalog-writer-process.md, `_writer_process`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from typing import Any

from ._phases import RunPhases, phases_metadata

logger = logging.getLogger(__name__)

EXIT_FLUSH_S = 30.0  # at interpreter exit, wait this long for queued documents


def check_writer_arguments(batch_size: int, max_delay: float, max_queued: int) -> None:
    """Refuse settings no writer can honour (both writers, before any thread or process)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if not max_delay > 0:
        raise ValueError(f"max_delay={max_delay} must be > 0 s")
    if max_queued < 1:
        raise ValueError(f"max_queued={max_queued} must be >= 1")


def _batching_writer(client: Any, batch_size: int) -> tuple[Any, dict[str, Any]]:
    """A TiledWriter whose per-run writers we keep (to flush them on time), and that dict.

    TiledWriter batches only by count and offers no flush; its per-run writer keeps the
    pending rows and stream datums in two caches that its own ``stop`` writes. We write
    them the same way when a batch is due by time. This reaches into bluesky-tiled-plugins
    2.0's run writer (bounded <2.1 in pyproject.toml; tests/storage/test_writer.py fails if
    it changes), with no normalizer: our documents are already the current event-model schema.
    """
    from bluesky_tiled_plugins import TiledWriter

    runs: dict[str, Any] = {}

    class _Writer(TiledWriter):
        def _factory(self, name: str, doc: dict[str, Any]) -> Any:
            callbacks, subfactories = super()._factory(name, doc)
            runs[doc["uid"]] = callbacks[0]
            return callbacks, subfactories

    # max_array_size=0: every array read into events (fit residuals, masks) is written
    # as an array node; tiled's SQLite tables can't hold list-valued columns.
    writer = _Writer(client, normalizer=None, batch_size=batch_size, max_array_size=0)
    return writer, runs


def _flush_run(run_writer: Any) -> int:
    """Write a run writer's cached events and stream datums now; how many events."""
    n = 0
    for stream, rows in run_writer._internal_data_cache.items():
        if rows:
            n += len(rows)
            run_writer._write_internal_data(rows, desc_node=run_writer._desc_nodes[stream])
            rows.clear()
    cached = run_writer._external_data_cache
    for key in list(cached):
        run_writer._write_external_data(cached.pop(key))
    return n


class RunBatches:
    """Writes documents to tiled in batches; no thread of its own, one caller at a time.

    Whoever drives it owns the clock: `write` per document, `flush` once `due` has passed
    (or to drain), so a thread (`CatalogWriter`) and a process (`_writer_child`) share it.

    :param client: a writable tiled container client (embedded or remote).
    :param batch_size: events (and frames) per write at most; more are written at once.
    :param max_delay: seconds a document may wait for its batch.
    """

    def __init__(self, client: Any, *, batch_size: int, max_delay: float) -> None:
        self.max_delay = max_delay
        self._writer, self._runs = _batching_writer(client, batch_size)
        self._phases = RunPhases()
        self._new_phases: dict[str, list[str]] = {}  # run uid -> phases not yet recorded
        self._failed: set[str | None] = set()
        self.errors: dict[str | None, BaseException] = {}
        """Run uid -> the exception that stopped its catalog writing."""
        self.written = 0
        """Documents handed to tiled so far."""
        self.due: float | None = None
        """When (monotonic s) the oldest unwritten cached document must go out, if any."""

    def timeout(self) -> float | None:
        """Seconds until a batch is due (0 if overdue), None if nothing is cached."""
        return None if self.due is None else max(0.0, self.due - time.monotonic())

    def write(self, name: str, doc: dict[str, Any], uid: str | None) -> None:
        """Hand one document of run ``uid`` to tiled (cached until its batch is written)."""
        if self.due is not None and time.monotonic() >= self.due:
            self.flush()
        if uid in self._failed:
            return
        if name == "stop":
            self._record_phases(uid or "")  # while the run is open
        try:
            self._writer(name, doc)
            self.written += 1
        except Exception as exc:
            self._fail(uid, name, exc)
            return
        changed = self._phases.feed(name, doc)
        if changed is not None:
            self._new_phases[changed[0]] = changed[1]
            self.due = self.due if self.due is not None else time.monotonic() + self.max_delay
        if name == "stop":
            self._runs.pop(uid or "", None)
        elif name in ("event", "event_page", "stream_datum") and self.due is None:
            self.due = time.monotonic() + self.max_delay

    def flush(self) -> None:
        """Write every run's cached events, stream datums and new phases now."""
        self.due = None
        for uid, run_writer in list(self._runs.items()):
            if uid in self._failed:
                continue
            try:
                _flush_run(run_writer)
            except Exception as exc:
                self._fail(uid, "event", exc)
                continue
            self._record_phases(uid)

    def _record_phases(self, uid: str) -> None:
        """Write run ``uid``'s ``faro.phase_names`` if its phase list changed."""
        phases = self._new_phases.pop(uid, None)
        run_writer = self._runs.get(uid)
        if phases is None or run_writer is None or run_writer.root_node is None:
            return
        try:  # metadata only: the run's data go on being written either way
            run_writer.root_node.update_metadata(phases_metadata(phases), drop_revision=True)
        except Exception as exc:
            logger.warning("run %s: could not record its phases %s: %s", uid, phases, exc)

    def _fail(self, uid: str | None, name: str, exc: BaseException) -> None:
        self._failed.add(uid)
        self._runs.pop(uid or "", None)
        self._new_phases.pop(uid or "", None)
        self.errors[uid] = exc
        logger.error(
            "writing a %r document of run %s to the catalog failed (%s); the rest of this "
            "run goes to its raw document log only (rebuild it with catalog.recover())",
            name,
            uid,
            exc,
            exc_info=exc,
        )


class CatalogWriter:
    """Writes documents to a tiled catalog from a background thread, in order, in batches.

    :param client: a writable tiled container client (embedded or remote).
    :param batch_size: events (and frames) per write at most; more are written at once.
    :param max_delay: seconds a document may wait for its batch: how far behind a live
        reader of a running run is at most (plus one write).
    :param max_queued: documents held in memory at most; a full queue makes the
        RunEngine wait (counted in `backpressure`), never drops a document.
    """

    def __init__(
        self,
        client: Any,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.8,
        max_queued: int = 20_000,
    ) -> None:
        check_writer_arguments(batch_size, max_delay, max_queued)
        self.max_delay = max_delay
        self._batches = RunBatches(client, batch_size=batch_size, max_delay=max_delay)
        self._queue: queue.Queue[Any] = queue.Queue(max_queued)
        self.backpressure = 0
        """How many documents found the queue full (the RunEngine waited for tiled)."""
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="faro-catalog-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close, EXIT_FLUSH_S)

    @property
    def errors(self) -> dict[str | None, BaseException]:
        """Run uid -> the exception that stopped its catalog writing."""
        return self._batches.errors

    @property
    def written(self) -> int:
        """Documents handed to tiled so far."""
        return self._batches.written

    @property
    def alive(self) -> bool:
        """Whether the writing thread runs (False once closed)."""
        return self._thread.is_alive()

    def put(self, name: str, doc: dict[str, Any], uid: str | None) -> None:
        """Queue document ``doc`` of run ``uid`` for writing; returns at once unless full."""
        if self._closed:
            raise RuntimeError("catalog writer is closed: subscribe the catalog again")
        try:
            self._queue.put_nowait((name, doc, uid))
        except queue.Full:
            self.backpressure += 1
            logger.warning(
                "the catalog writer is %d documents behind: acquisition waits for tiled",
                self._queue.maxsize,
            )
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

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        """``{"catalog": (queued documents, capacity)}`` for the run status."""
        return {"catalog": (self.pending, self._queue.maxsize)}

    def _work(self) -> None:
        batches = self._batches
        while True:
            try:
                item = self._queue.get(timeout=batches.timeout())
            except queue.Empty:
                batches.flush()  # a batch is due by time
                continue
            if item is None:
                batches.flush()
                return
            if isinstance(item, threading.Event):
                batches.flush()
                item.set()
                continue
            batches.write(*item)

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
