"""Writer processes: started with ``subprocess.Popen``, kept a minute between writers.

A new writer process spends ~3.5 s of CPU importing tiled's server (dask, pandas,
fastapi, SQLAlchemy) before it can write; opening a catalog in one that is already
running costs ~0.4 s. `Catalog.subscribe` once per session pays the first only once, but
``reanalyze`` over several runs, a benchmark that subscribes per plan, or a test suite
making a catalog per test would pay it every time: a closed writer's process therefore
waits, idle, for the next writer of this interpreter (`IDLE_S` at most, `MAX_IDLE` of
them), then is told to exit. It keeps its last catalog open while it waits: a writer of
the same catalog (the usual next one) finds it ready at once; another catalog is opened
after that one is closed.

Not multiprocessing: its spawn and forkserver start methods re-import the user's
``__main__`` (an acquisition script without a ``__main__`` guard would run twice), and
fork copies a process full of threads. The bootstrap imports the writer's modules
without the packages' ``__init__`` (pymmcore-plus, devices, the scientific stack: ~1.2 s
of CPU the child does not need).

A `Session` is one writer's use of one process: the writer's message handler, and what
the process said to it (ready, fatal, closed). Each process has a thread reading its
replies; it hands them to the session it serves and, when the pipe closes, tells that
session's writer the process ended (`on_end`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

from ._embedded import CatalogDirectory

logger = logging.getLogger(__name__)

SUPPORTED = os.name == "posix"
"""Whether writer processes can be started here: their pipes are passed as inherited file
descriptors (``pass_fds``), which Windows lacks; there the thread writer is used."""
IDLE_S = 60.0
"""How long a writer process outlives its writer, waiting for the next one (s)."""
MAX_IDLE = 2
"""Idle writer processes kept at most (each holds ~200 MB: tiled's imports)."""

_STORAGE = Path(__file__).resolve().parent
_BOOTSTRAP = f"""\
import signal, sys, types
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C pauses the RunEngine, not the writer
for name, path in (("faro_bluesky", {str(_STORAGE.parent)!r}), ("faro_bluesky.storage", \
{str(_STORAGE)!r})):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from faro_bluesky.storage._writer_child import main
sys.exit(main())
"""
"""Runs `_writer_child.main` with the two packages as bare namespaces (no ``__init__``)."""


@dataclass(eq=False)
class Session:
    """One writer's use of a writer process, from ``open`` to ``closed`` (or its death)."""

    process: WriterProcess
    handler: Callable[[tuple[Any, ...]], None]
    on_end: Callable[[Session, int], None]
    opened_at: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    """Set once the process answered ``closed``, or died."""
    dead: threading.Event = field(default_factory=threading.Event)
    """Set if the process died while serving this session."""
    startup_s: float | None = None
    fatal: str | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        """Send ``message`` to the process (raises OSError if its pipe is closed)."""
        self.process.docs.send(message)


class WriterProcess:
    """A child running `_writer_child`, its two pipes and the thread reading its replies."""

    def __init__(self) -> None:
        docs_in, self.docs = Pipe(duplex=False)
        self.replies, replies_out = Pipe(duplex=False)
        fds = (docs_in.fileno(), replies_out.fileno())
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOTSTRAP, *map(str, fds)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # tiled prints there; errors come as messages
            )
        finally:
            docs_in.close()
            replies_out.close()
        self.session: Session | None = None
        self.dead = threading.Event()
        self.idle_since: float | None = None
        self._reader = threading.Thread(
            target=self._read, name=f"faro-catalog-writer-{self.pid}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def _read(self) -> None:
        try:
            while True:
                self._dispatch(self.replies.recv())
        except (EOFError, OSError):
            pass
        try:
            code = self.popen.wait(10)
        except subprocess.TimeoutExpired:  # its pipe closed but it lingers: end it
            self.popen.kill()
            code = self.popen.wait()
        self.dead.set()
        with _POOL_LOCK:
            if self in _IDLE:
                _IDLE.remove(self)
        self.replies.close()  # (not `docs`: a sender may be using it; a send fails anyway)
        session, self.session = self.session, None
        if session is not None:
            session.dead.set()
            session.finished.set()
            session.on_end(session, code)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "log":  # also from an idle process
            _, level, name, text = message
            logging.getLogger(name).log(level, "%s", text)
            return
        session = self.session
        if session is None:
            return
        if kind == "ready":
            session.startup_s = time.monotonic() - session.opened_at
            session.ready.set()
            logger.debug("catalog writer process %d ready in %.2f s", self.pid, session.startup_s)
        elif kind == "fatal":
            session.fatal = message[1]
        session.handler(message)
        if kind == "closed":  # free before anyone waiting on ``finished`` wakes up
            self.session = None
            _release(self)
            session.finished.set()

    def retire(self) -> None:
        """Tell the (idle) process to exit."""
        with contextlib.suppress(OSError, ValueError):  # (gone already)
            self.docs.send(("exit",))


_IDLE: list[WriterProcess] = []
_POOL_LOCK = threading.Lock()


def open_session(
    directory: CatalogDirectory,
    batch_size: int,
    max_delay: float,
    handler: Callable[[tuple[Any, ...]], None],
    on_end: Callable[[Session, int], None],
) -> Session:
    """A writer process (an idle one if any, else a new one) opening ``directory``."""
    while True:
        process = _take() or WriterProcess()
        session = Session(process, handler, on_end)
        process.session = session
        if not process.dead.is_set():  # (else it died idle, after `_take` looked: next)
            break
    with contextlib.suppress(OSError, ValueError):  # it died just now: its reader says so
        session.send(("open", directory, batch_size, max_delay))  # a few hundred bytes
    return session


def _take() -> WriterProcess | None:
    """The idle process released last (likely holding the catalog wanted again)."""
    with _POOL_LOCK:
        while _IDLE:
            process = _IDLE.pop()
            process.idle_since = None
            if not process.dead.is_set() and process.popen.poll() is None:
                return process
    return None


def _release(process: WriterProcess) -> None:
    """Keep ``process`` for the next writer (`IDLE_S` at most)."""
    since = time.monotonic()
    with _POOL_LOCK:
        if process.dead.is_set():
            return
        process.idle_since = since
        _IDLE.append(process)
        excess = _IDLE[:-MAX_IDLE]
        del _IDLE[:-MAX_IDLE]
    for old in excess:
        old.retire()
    timer = threading.Timer(IDLE_S, _expire, (process, since))
    timer.daemon = True
    try:
        timer.start()
    except RuntimeError:  # the interpreter is exiting: no later writer will want it
        _expire(process, since)


def _expire(process: WriterProcess, since: float) -> None:
    with _POOL_LOCK:
        if process.idle_since != since or process not in _IDLE:
            return  # taken again since (or retired)
        _IDLE.remove(process)
    process.retire()
