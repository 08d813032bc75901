"""The catalog writer process: `RunBatches` over its own in-process tiled app.

Started by `_writer_pool.WriterProcess` as ``python -c <bootstrap> DOCS_FD REPLIES_FD``
(or ``python -m faro_bluesky.storage._writer_child DOCS_FD REPLIES_FD``); the two file
descriptors are the ends of two pipes, read and written as
`multiprocessing.connection.Connection` objects (pickled messages; stdout is not ours:
tiled may print to it).

Messages in (parent -> child), in order, for each writer it serves in turn:

- ``("open", directory, batch_size, max_delay)``: open that catalog;
- ``("docs", [(name, doc, uid), ...])``: documents, in the order the RunEngine made them;
- ``("flush", token)``: write everything received so far, then answer ``flushed``;
- ``("close",)``: write everything, answer ``closed``, wait for the next ``open`` (of the
  same catalog: it stays open, `_OpenCatalog`), or ``("exit",)``.

Messages out: ``("ready", pid, seconds to open)``, ``("flushed", token, written)``,
``("error", uid, text)`` when a run's writing fails, ``("done", uid)`` when a run's stop is
written, ``("log", level, logger name, text)`` for this process's warnings (the parent
logs them), ``("fatal", text)`` if the catalog cannot be opened (then it exits),
``("closed", written)``.

The child ends without writing more when its parent is gone: EOF on the documents pipe,
or a new parent pid (a forked grandchild of the parent may hold the pipe open). A run
the parent was recording is then rebuilt from its raw log by ``Catalog.recover``.

This module imports only the standard library at first; tiled comes with a catalog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

PARENT_POLL_S = 1.0
"""How often an idle child checks that its parent still lives (s)."""


class _Replies:
    """The pipe to the parent, shared by the main loop and logging (any thread)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            self._conn.send(message)


class _RelayHandler(logging.Handler):
    """Sends this process's warnings and errors to the parent, which logs them."""

    def __init__(self, replies: _Replies) -> None:
        super().__init__(logging.WARNING)
        self._replies = replies
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the parent is gone: nobody to tell
            self._replies.send("log", record.levelno, record.name, self.format(record))


def _report(batches: Any, replies: _Replies, reported: set[str | None]) -> None:
    """Relay failures not yet relayed (``errors`` only grows)."""
    for uid, exc in batches.errors.items():
        if uid not in reported:
            reported.add(uid)
            replies.send("error", uid, f"{type(exc).__name__}: {exc}")


def serve(batches: Any, docs: Connection, replies: _Replies, parent: int) -> int:
    """Write what arrives until ``close`` (0, all written) or until the parent is gone (1)."""
    reported: set[str | None] = set()
    while True:
        timeout = batches.timeout()
        wait = PARENT_POLL_S if timeout is None else min(timeout, PARENT_POLL_S)
        try:
            ready = docs.poll(wait)
            message = docs.recv() if ready else None
        except (EOFError, OSError):
            return 1  # the parent closed its end or died: write nothing more
        if message is None:
            if os.getppid() != parent:
                return 1
            if batches.due is not None and time.monotonic() >= batches.due:
                batches.flush()
                _report(batches, replies, reported)
            continue
        kind = message[0]
        if kind == "docs":
            for name, doc, uid in message[1]:
                batches.write(name, doc, uid)
                if name == "stop" and uid not in batches.errors:
                    replies.send("done", uid)
        else:
            batches.flush()
        _report(batches, replies, reported)
        if kind == "flush":
            replies.send("flushed", message[1], batches.written)
        elif kind == "close":
            return 0


def _next(docs: Connection, parent: int) -> Any:
    """The next message; None once the parent is gone (checked every `PARENT_POLL_S`)."""
    try:
        while not docs.poll(PARENT_POLL_S):
            if os.getppid() != parent:
                return None
        return docs.recv()
    except (EOFError, OSError):
        return None


class _OpenCatalog:
    """The catalog this process has open, kept for the next writer of the same catalog.

    A writer that subscribes again (``reanalyze`` over several runs, a benchmark that
    subscribes per plan) then finds its process ready at once instead of after building
    tiled's app (~0.5 s). Its files are checked to be the same (device, inode): a catalog
    deleted and made anew at the same path is opened anew.
    """

    def __init__(self) -> None:
        self.client: Any = None
        self._key: tuple[Any, ...] = ()

    def client_for(self, directory: Any) -> Any:
        """A tiled client over ``directory``: the open one if it is that catalog."""
        if self.client is not None and self._key == (directory, _identity(directory)):
            return self.client
        self.close()
        from ._embedded import in_process_client

        self.client = in_process_client(directory)
        self._key = (directory, _identity(directory))
        return self.client

    def close(self) -> None:
        """Close the catalog (tiled's portal thread and its connections)."""
        if self.client is not None:
            self.client.context.close()
            self.client = None


def _identity(directory: Any) -> tuple[tuple[int, int] | None, ...]:
    from ._embedded import TABLES

    files = (directory.catalog_db, directory.root / TABLES[directory.tables])
    out: list[tuple[int, int] | None] = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((stat.st_dev, stat.st_ino))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    """Serve the parent's writers one after the other, until told to exit or orphaned."""
    args = sys.argv[1:] if argv is None else argv
    docs = Connection(int(args[0]), writable=False)
    replies = _Replies(Connection(int(args[1]), readable=False))
    parent = os.getppid()
    root = logging.getLogger()
    root.addHandler(_RelayHandler(replies))
    root.setLevel(logging.WARNING)
    catalog = _OpenCatalog()
    try:
        while True:
            message = _next(docs, parent)
            if message is None or message[0] == "exit":
                return 0 if message is not None else 1
            _, directory, batch_size, max_delay = message
            started = time.monotonic()
            try:
                from ._writer import RunBatches

                client = catalog.client_for(directory)
                batches = RunBatches(client, batch_size=batch_size, max_delay=max_delay)
            except Exception as exc:
                replies.send("fatal", "".join(traceback.format_exception(exc)))
                return 2
            replies.send("ready", os.getpid(), time.monotonic() - started)
            if serve(batches, docs, replies, parent) != 0:
                return 1
            replies.send("closed", batches.written)
    except (BrokenPipeError, ConnectionError):  # the parent is gone mid-reply
        return 1
    finally:
        catalog.close()  # so that the interpreter can exit


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C pauses the RunEngine, not us
    sys.exit(main())
