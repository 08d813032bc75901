"""The embedded catalog written from a child process, so tiled never holds our interpreter.

An embedded catalog is tiled's ASGI app called in-process; each batch the writer flushes
costs ~145 ms of CPU in tiled's server code (fastapi, starlette, SQLAlchemy), whatever its
row count, and that code holds the GIL the RunEngine needs: a 10 ms-exposure burst took
15.4 ms per frame with the catalog, 10.7 without. `ProcessCatalogWriter` has the interface
of `CatalogWriter` but hands documents to a writer process (`_writer_pool`, running
`_writer_child`) that runs the same `RunBatches` over its own in-process app on the same
directory; here only a sender thread pickles the documents into a pipe
(docs/decisions/0059-catalog-writer-process.md).

The process is asked for at `Catalog.recorder`, so that it is ready before a first run's
stop (`startup_s`: ~4 s for a new process, ~0.4 s for one a closed writer left idle).

If the process dies, every run it had open gets an error in `errors` and the death is
logged; `flush` returns False at once and documents queued for it are dropped (counted
in `lost`; the raw document log keeps them, and ``Catalog.recover`` rebuilds those runs).
The next run's start asks for a new process.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import queue
import threading
import time
from typing import Any

from ._embedded import CatalogDirectory
from ._writer import EXIT_FLUSH_S, CatalogWriter, check_writer_arguments
from ._writer_pool import SUPPORTED, Session, open_session

logger = logging.getLogger(__name__)

SEND_BATCH = 2000
"""Documents pickled into one message at most (one write call, one wake-up of the child)."""


def catalog_writer(
    client: Any,
    directory: CatalogDirectory | None,
    *,
    batch_size: int,
    max_delay: float,
    process: bool | None = None,
) -> CatalogWriter | ProcessCatalogWriter:
    """The writer for a catalog: a process for an embedded SQLite one, else a thread.

    A tiled server is another process already, DuckDB tables admit one process, and
    Windows lacks the inherited pipes: those keep `CatalogWriter`. ``process`` forces it.
    """
    usable = directory is not None and directory.tables == "sqlite" and SUPPORTED
    if process and not usable:
        raise ValueError(
            "process=True: only an embedded catalog with SQLite tables can be written "
            "from another process (Catalog.local(path), tables='sqlite'), on POSIX"
        )
    if directory is not None and usable and process is not False:
        return ProcessCatalogWriter(directory, batch_size=batch_size, max_delay=max_delay)
    return CatalogWriter(client, batch_size=batch_size, max_delay=max_delay)


class CatalogWriterError(RuntimeError):
    """A failure of the catalog writer process, relayed with the original's type and text."""


class ProcessCatalogWriter:
    """Writes documents to an embedded catalog from a child process, in order, in batches.

    Same interface as `CatalogWriter`; `put` returns at once (a bounded queue, drained by a
    thread that pickles documents to the process), `flush` returns when the process has
    written everything put before it.

    :param directory: the embedded catalog (SQLite tables: several processes may open it).
    :param batch_size: events (and frames) per write at most; more are written at once.
    :param max_delay: seconds a document may wait for its batch: how far behind a live
        reader of a running run is at most (plus one write).
    :param max_queued: documents held in this process at most; a full queue makes the
        RunEngine wait (counted in `backpressure`), never drops a document.
    """

    def __init__(
        self,
        directory: CatalogDirectory,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.8,
        max_queued: int = 20_000,
    ) -> None:
        check_writer_arguments(batch_size, max_delay, max_queued)
        self.directory = directory
        self.batch_size = batch_size
        self.max_delay = max_delay
        self._queue: queue.Queue[tuple[str, Session, Any]] = queue.Queue(max_queued)
        self.errors: dict[str | None, BaseException] = {}
        """Run uid -> the failure that stopped its catalog writing (`CatalogWriterError`)."""
        self.backpressure = 0
        """How many documents found the queue full (the RunEngine waited for tiled)."""
        self.written = 0
        """Documents handed to tiled so far (as of the process's last answer)."""
        self.lost = 0
        """Documents not written because the writer process had died (in the raw logs)."""
        self._lock = threading.Lock()
        self._flushes: dict[int, tuple[Session, threading.Event, list[bool]]] = {}
        self._tokens = itertools.count()
        self._open: dict[str, Session] = {}  # run uid -> the session writing it, until its stop
        self._closed = False
        self._session = self._open_session()
        self._sender = threading.Thread(target=self._send, name="faro-catalog-sender", daemon=True)
        self._sender.start()
        atexit.register(self.close, EXIT_FLUSH_S)

    # ------------------------------------------------------------ interface
    def put(self, name: str, doc: dict[str, Any], uid: str | None) -> None:
        """Queue document ``doc`` of run ``uid`` for writing; returns at once unless full."""
        if self._closed:
            raise RuntimeError("catalog writer is closed: subscribe the catalog again")
        if name == "start":
            with self._lock:
                if self._session.dead.is_set():
                    self._restart(uid)
                if uid is not None:
                    self._open[uid] = self._session
        item = ("doc", self._session, (name, doc, uid))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.backpressure += 1
            logger.warning(
                "the catalog writer is %d documents behind: acquisition waits for tiled",
                self._queue.maxsize,
            )
            self._queue.put(item)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every document queued so far is written; False on timeout.

        False at once if the writer process is dead: the RunEngine never waits on a corpse.
        """
        session = self._session
        token = next(self._tokens)
        done = threading.Event()
        result = [False]
        with self._lock:
            if self._closed or session.dead.is_set():
                return False
            self._flushes[token] = (session, done, result)
        try:
            self._queue.put(("flush", session, token))
            return done.wait(timeout) and result[0]
        finally:
            with self._lock:
                self._flushes.pop(token, None)

    @property
    def pending(self) -> int:
        """Documents queued here and not yet sent (approximate)."""
        return self._queue.qsize()

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        """``{"catalog": (queued documents, capacity)}`` for the run status."""
        return {"catalog": (self.pending, self._queue.maxsize)}

    @property
    def alive(self) -> bool:
        """Whether the writer process takes documents (False once it died or was closed)."""
        return not self._session.finished.is_set()

    @property
    def pid(self) -> int:
        """The writer process's id."""
        return self._session.process.pid

    @property
    def startup_s(self) -> float | None:
        """Seconds from asking for the writer process to its catalog open (None: not yet)."""
        return self._session.startup_s

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the writer process has opened the catalog; False if it did not."""
        session = self._session
        deadline = None if timeout is None else time.monotonic() + timeout
        while not session.ready.wait(0.05):
            if session.dead.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued (up to ``timeout`` s), then let the writer process go."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
        atexit.unregister(self.close)
        session = self._session
        deadline = None if timeout is None else time.monotonic() + timeout
        with contextlib.suppress(queue.Full):  # a stuck process must not hang the exit
            self._queue.put(("close", session, None), timeout=timeout)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not session.finished.wait(left):
            logger.warning(
                "the catalog writer process %d was still writing at close; it goes on in the "
                "background (%d documents were queued here)",
                session.process.pid,
                self.pending,
            )

    # ------------------------------------------------------------ threads
    def _open_session(self) -> Session:
        return open_session(
            self.directory, self.batch_size, self.max_delay, self._handle, self._ended
        )

    def _restart(self, uid: str | None) -> None:
        """A new process for run ``uid`` after the last one died.

        Never raises: the run's documents go to its raw log either way.
        """
        try:
            self._session = self._open_session()
        except Exception:
            logger.exception("run %s: could not start a new catalog writer process", uid)
            return
        logger.warning("run %s: written by a new catalog writer process", uid)

    def _send(self) -> None:
        """Pickle queued documents to their process, in order, many per message."""
        while True:
            items = [self._queue.get()]
            while len(items) < SEND_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            docs: list[tuple[str, dict[str, Any], str | None]] = []
            target: Session | None = None
            for kind, session, payload in items:
                if kind == "doc" and session is target:
                    docs.append(payload)
                    continue
                self._transmit(target, ("docs", docs), len(docs))
                docs, target = [], session
                if kind == "doc":
                    docs.append(payload)
                elif kind == "flush":
                    self._transmit(session, ("flush", payload))
                else:  # close: nothing is queued after it
                    self._transmit(session, ("close",))
                    return
            self._transmit(target, ("docs", docs), len(docs))

    def _transmit(
        self, session: Session | None, message: tuple[Any, ...], n_docs: int = -1
    ) -> None:
        """Send ``message``; documents for a dead process count as `lost`."""
        if session is None or n_docs == 0:
            return
        if not session.dead.is_set():
            try:
                session.send(message)
                return
            except (OSError, ValueError):  # its pipe is closed: its reader reports the death
                pass
        self.lost += max(n_docs, 0)

    def _handle(self, message: tuple[Any, ...]) -> None:
        """A reply of the writer process (on its reader thread)."""
        kind = message[0]
        if kind == "done":
            self._open.pop(message[1], None)
        elif kind == "error":
            _, uid, text = message
            self.errors[uid] = CatalogWriterError(text)
            self._open.pop(uid or "", None)
        elif kind == "flushed":
            self.written = message[2]
            with self._lock:
                waiter = self._flushes.get(message[1])
            if waiter is not None:
                waiter[2][0] = True
                waiter[1].set()
        elif kind == "closed":
            self.written = message[1]

    def _ended(self, session: Session, code: int) -> None:
        """The process died serving us: release whoever waits, record the runs it lost."""
        with self._lock:
            for owner, done, _ in self._flushes.values():
                if owner is session:
                    done.set()  # result stays False
            runs = [uid for uid, owner in self._open.items() if owner is session]
            for uid in runs:
                del self._open[uid]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        text = f"the catalog writer process {session.process.pid} {how}"
        if session.fatal is not None:
            text += f" (it could not open the catalog: {session.fatal.strip().splitlines()[-1]})"
        for uid in runs:
            self.errors[uid] = CatalogWriterError(f"{text} while run {uid} was being written")
        if not runs:
            self.errors.setdefault(None, CatalogWriterError(text))
        logger.error(
            "%s; runs not complete in the catalog: %s. Their raw document logs hold every "
            "document: catalog.recover() rebuilds them (a new writer process starts at the "
            "next run)%s",
            text,
            ", ".join(runs) or "none",
            "" if session.fatal is None else f"\n{session.fatal}",
        )
