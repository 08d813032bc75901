"""The raw document log: every document of a run, as received, with its receive time.

tiled re-synthesises documents from its tables (ARCHITECTURE decision 8): semantically
equal, not the live order, no receive times. For an exact, timed replay (re-driving the
closed-loop analyzer offline) we keep what the RunEngine emitted: one JSON-lines file per
run, ``<dir>/<start uid>.jsonl``::

    {"format": "faro-bluesky document log", "version": 1}
    {"name": "start", "received": 1795503014.24, "doc": {...}}
    ...

Each line is flushed as it is written, so a process killed with SIGKILL loses at most the
document being written (a truncated last line, which the reader skips). Arrays in
documents (recorded masks) are stored as zlib-compressed bytes with dtype and shape and
come back as numpy arrays. While a run is open its writer holds an exclusive lock on
``<uid>.lock``; a log whose lock can be taken belongs to a dead writer (see
`writer_alive`), which is how a killed run is told from a running one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = "faro-bluesky document log"
VERSION = 1
_ARRAY_TAG = "__ndarray__"


class LoggedDocument(NamedTuple):
    """One line of a document log."""

    name: str
    doc: dict[str, Any]
    received: float
    """Wall-clock time (epoch s) the document reached the log."""


# ------------------------------------------------------------------ encoding
def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return obj.tolist()
        raw = np.ascontiguousarray(obj)
        data = base64.b64encode(zlib.compress(raw.tobytes(), 1)).decode("ascii")
        return {_ARRAY_TAG: {"dtype": raw.dtype.str, "shape": list(raw.shape), "zlib": data}}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to a document log")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _ARRAY_TAG in obj:
        spec = obj[_ARRAY_TAG]
        raw = zlib.decompress(base64.b64decode(spec["zlib"]))
        return np.frombuffer(raw, dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy()
    return obj


def encode_line(name: str, doc: dict[str, Any], received: float) -> str:
    """One log line (without the newline)."""
    return json.dumps(
        {"name": name, "received": received, "doc": doc}, default=_encode, allow_nan=True
    )


# ------------------------------------------------------------------- locking
def _lock(handle: IO[Any], *, blocking: bool) -> bool:
    """Take an exclusive lock on an open file; False if another process holds it."""
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            handle.seek(0)
            mode = msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK
            msvcrt.locking(handle.fileno(), mode, 1)
        else:
            import fcntl

            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), flags)
    except OSError:
        return False
    return True


def _unlock(handle: IO[Any]) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def lock_path(log: Path) -> Path:
    """The lock file of a log."""
    return log.with_suffix(".lock")


def writer_alive(log: str | Path) -> bool:
    """Whether a live process is still writing ``log`` (it holds the run's lock)."""
    path = lock_path(Path(log))
    try:
        handle = open(path)  # noqa: SIM115 - closed below; never create a lock file here
    except FileNotFoundError:
        return False
    try:
        if _lock(handle, blocking=False):
            _unlock(handle)
            return False
        return True
    finally:
        handle.close()


# -------------------------------------------------------------------- writing
class _OpenLog:
    """The open log file of one run and its held lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_handle = open(lock_path(path), "a+")  # noqa: SIM115 - closed in close()
        if not _lock(self._lock_handle, blocking=False):
            self._lock_handle.close()
            raise BlockingIOError(
                f"another writer holds the log of run {path.stem} (is the catalog "
                "subscribed twice?): this writer leaves it alone"
            )
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if self._file.tell() == 0:
            self._file.write(json.dumps({"format": FORMAT, "version": VERSION}) + "\n")
        self.count = 0

    def write(self, name: str, doc: dict[str, Any], received: float) -> None:
        self._file.write(encode_line(name, doc, received) + "\n")
        self._file.flush()  # a SIGKILL now loses nothing written so far
        self.count += 1

    def close(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())  # a complete run survives a power cut too
        finally:
            self._file.close()
            _unlock(self._lock_handle)
            self._lock_handle.close()
            lock_path(self.path).unlink(missing_ok=True)


class DocumentLog:
    """Writes each run's documents to ``<directory>/<start uid>.jsonl`` as they arrive.

    Use it as a callback (``RE.subscribe(DocumentLog(dir))``) or let
    `Catalog.subscribe` wire it. Documents are routed to their run by uid, so documents
    of a run that is not open (none should come) are dropped with a warning.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _OpenLog] = {}
        self._refused: set[str] = set()
        self._router = RunIndex()

    def path(self, uid: str) -> Path:
        """The log of run ``uid``."""
        return self.directory / f"{uid}.jsonl"

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        """Log one document (the RunEngine calls this)."""
        self.write(name, doc, self._router.run_of(name, doc), time.time())

    def write(self, name: str, doc: dict[str, Any], uid: str | None, received: float) -> None:
        """Log ``doc`` of run ``uid`` received at ``received`` (epoch s)."""
        if name == "start":
            try:
                self._open[doc["uid"]] = _OpenLog(self.path(doc["uid"]))
            except BlockingIOError:
                self._refused.add(doc["uid"])
                raise
        log = self._open.get(uid) if uid is not None else None
        if log is None:
            if uid not in self._refused:
                logger.warning("dropped a %r document of no open run (run uid %s)", name, uid)
            return
        log.write(name, doc, received)

    def close_run(self, uid: str) -> None:
        """Close the log of run ``uid`` (fsync, release its lock)."""
        log = self._open.pop(uid, None)
        if log is not None:
            log.close()
        self._refused.discard(uid)
        self._router.forget(uid)

    def close(self) -> None:
        """Close every open log (their runs stay without a stop document)."""
        for uid in list(self._open):
            self.close_run(uid)


class RunIndex:
    """Which run a document belongs to, from the uids documents refer to."""

    def __init__(self) -> None:
        self._run_of: dict[str, str] = {}  # descriptor / resource uid -> run uid

    def run_of(self, name: str, doc: dict[str, Any]) -> str | None:
        """The start uid of the run ``doc`` belongs to (None if unknown)."""
        if name == "start":
            return doc["uid"]
        if name in ("stop", "descriptor", "resource", "stream_resource"):
            run = doc.get("run_start")
            if name != "stop" and run is not None:
                self._run_of[doc["uid"]] = run
            return run
        if name in ("event", "event_page", "stream_datum"):
            return self._run_of.get(doc["descriptor"])
        if name in ("datum", "datum_page"):
            return self._run_of.get(doc["resource"])
        return None

    def forget(self, uid: str) -> None:
        """Drop what is known of run ``uid`` (after its stop)."""
        self._run_of = {k: v for k, v in self._run_of.items() if v != uid}


# -------------------------------------------------------------------- reading
def read_document_log(path: str | Path) -> Iterator[LoggedDocument]:
    """The documents of a log, in the order received.

    A truncated last line (the process was killed while writing it) is skipped with a
    warning; a bad line elsewhere raises ValueError naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"document log {str(path)!r} does not exist: pass a <uid>.jsonl path")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line, object_hook=_decode)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                logger.warning("%s: skipped the truncated last line (writer was killed)", path)
                return
            raise ValueError(f"{path}:{number} is not a document log line: {exc}") from exc
        if "format" in item:
            if item.get("format") != FORMAT or item.get("version") != VERSION:
                raise ValueError(f"{path} is a {item} file, not a {FORMAT} v{VERSION}")
            continue
        yield LoggedDocument(item["name"], item["doc"], item["received"])


def last_document_name(path: str | Path) -> str | None:
    """Name of the last complete document of a log, reading only its tail."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        size = 1 << 16
        while True:
            start = max(0, end - size)
            f.seek(start)
            lines = f.read(end - start).split(b"\n")
            for line in reversed(lines[1:] if start > 0 else lines):  # 1st may be partial
                try:
                    item = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # empty, or the truncated line of a killed writer
                return item.get("name")
            if start == 0:
                return None
            size *= 8
