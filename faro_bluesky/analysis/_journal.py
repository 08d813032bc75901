"""Tracks on disk per visit: an append-only journal per FOV, consolidated at a clean finish.

Why: tracks used to wait in memory and go to disk every 20 visits, so a run killed with
``kill -9`` kept its frames and labels but lost its tracks; faro's answer, rewriting the
whole table every frame, costs O(rows so far) per visit (O(n²) per run). Here each analysed
visit's rows are appended to ``tracks/fov_<p:04d>/part-<k:06d>.journal`` in one ``write``
before the visit's summary is published: constant cost per visit, and a kill loses at most
the record being written. At a clean finish the journal becomes ``part-<k>.parquet`` (same
``k``), the layout readers knew before (docs/decisions/0016-run-store-layout.md).

A record (little-endian)::

    b"FTJ1"   magic, 4 bytes
    uint32    payload length
    uint32    CRC-32 of the payload
    int64     t, the visit's timepoint
    uint8     flags: 1 = provisional (a later record with the same t replaces it)
    payload   one Arrow IPC stream of the visit's rows, pandas metadata included, so the
              columns come back with the dtypes they were written with

Visits have different columns (``lit`` only with a mask, reference features only at
reference timepoints), so each record carries its own schema rather than sharing one
stream's. A visit waiting for its reference stack is written at once as provisional and
again, with the reference features, when the stack comes: a kill in between keeps its rows.

A torn tail (short header or payload, bad magic or CRC: the writer was killed mid-record)
ends the journal; the records before it are read, with a warning naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import threading
import zlib
from pathlib import Path

import pandas as pd
import pyarrow as pa

logger = logging.getLogger(__name__)

MAGIC = b"FTJ1"
_HEADER = struct.Struct("<4sIIqB")
PROVISIONAL = 1
PART = re.compile(r"^part-(\d+)\.(parquet|journal)$")
"""A FOV folder's parts: consolidated parquet, or a journal (a run killed or running)."""


# ------------------------------------------------------------------------- writing
def encode(t: int, rows: pd.DataFrame, *, provisional: bool = False) -> bytes:
    """One journal record holding ``rows`` (the rows of visit ``t``)."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    payload = sink.getvalue().to_pybytes()
    flags = PROVISIONAL if provisional else 0
    header = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), int(t), flags)
    return header + payload


class _Journal:
    """One FOV's open journal file (analyzer thread only, under `TracksJournal`'s lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size

    def write(self, record: bytes) -> None:
        """Append ``record`` whole, or leave the file as it was.

        Undoing a partial write keeps later records readable: a torn record in the middle
        would end the journal there.
        """
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BaseException:
            os.ftruncate(self.fd, self.size)  # if this fails too, the caller drops us
            raise
        self.size += len(record)

    def close(self) -> None:
        os.close(self.fd)


class TracksJournal:
    """The tracks of one run's analysis: ``append`` per visit, `finish` at a clean end.

    :param root: the analysis store (the run's zarr store or the analyzer's ``output``);
        tracks go to ``<root>/tracks``. Parts already there (an earlier run into the same
        ``output``) are kept: this one's are numbered after them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "tracks"
        self._lock = threading.Lock()
        self._open: dict[int, _Journal] = {}

    def append(self, fov: int, t: int, rows: pd.DataFrame, *, provisional: bool = False) -> None:
        """Write visit ``t``'s rows of FOV ``fov`` to disk now (empty visits write nothing).

        ``provisional``: more columns follow (reference features); the next record of the
        same ``t`` replaces this one. Returns once the record is in the operating system's
        hands, so a killed process keeps it (a power cut may lose it until `finish`).
        """
        if not len(rows):
            return
        record = encode(t, rows, provisional=provisional)
        with self._lock:
            journal = self._open.get(fov)
            if journal is None:
                journal = self._open[fov] = self._new_journal(fov)
            try:
                journal.write(record)
            except BaseException:
                if journal.size != _file_size(journal.path):  # could not undo: start anew
                    journal.close()
                    del self._open[fov]
                raise

    def _new_journal(self, fov: int) -> _Journal:
        folder = self.root / f"fov_{fov:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        taken = (int(m.group(1)) for p in folder.iterdir() if (m := PART.match(p.name)))
        return _Journal(folder / f"part-{max(taken, default=-1) + 1:06d}.journal")

    def finish(self) -> None:
        """Consolidate each journal into ``part-<k>.parquet`` (fsync'ed) and delete it.

        The parquet part is written under a temporary name and renamed, and readers take a
        parquet part over a journal of the same ``k``: a kill at any point shows every row
        once. Costs one read and one write of the run's rows, once. A journal that cannot
        be consolidated stays as it is (readers read it) and the first such error is raised
        after the others are done.
        """
        failed: Exception | None = None
        with self._lock:
            journals, self._open = self._open, {}
            for journal in journals.values():
                journal.close()
                try:
                    _consolidate(journal.path)
                except Exception as exc:
                    failed = failed or exc
        if failed is not None:
            raise failed

    def close(self) -> None:
        """Release the files without consolidating (the run did not finish cleanly)."""
        with self._lock:
            journals, self._open = self._open, {}
            for journal in journals.values():
                journal.close()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _consolidate(journal: Path) -> None:
    table = read_journal(journal)
    if table is not None:
        final = journal.with_suffix(".parquet")
        tmp = journal.with_suffix(".parquet.tmp")
        table.to_parquet(tmp, compression="zstd", index=False)
        _fsync(tmp)
        os.replace(tmp, final)
        # the rename survives a power cut too (Windows cannot open a directory: NTFS
        # journals the rename itself)
        with contextlib.suppress(OSError):
            _fsync(final.parent)
    try:
        journal.unlink()
    except OSError as exc:  # e.g. Windows, a reader has it open: the parquet part wins
        logger.warning("could not delete consolidated tracks journal %s: %s", journal, exc)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- reading
def read_records(path: Path, log: logging.Logger = logger) -> list[tuple[int, int, pa.Table]]:
    """The intact records of journal ``path`` as (t, flags, rows), in write order.

    Stops at a torn or corrupt record (warning with the file and offset on ``log``, the
    reader's logger): a single writer only appends, so only the last record can be torn.
    """
    data = path.read_bytes()
    out: list[tuple[int, int, pa.Table]] = []
    pos, size = 0, len(data)
    while pos < size:
        problem = None
        if size - pos < _HEADER.size:
            problem = "short header"
        else:
            magic, length, crc, t, flags = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            payload = data[start : start + length]
            if magic != MAGIC:
                problem = "bad magic"
            elif len(payload) < length:
                problem = "short payload"
            elif zlib.crc32(payload) != crc:
                problem = "bad checksum"
        if problem is not None:
            log.warning(
                "tracks journal %s: skipped a torn record at byte %d of %d (%s): the "
                "analyzer was killed while writing it, or is writing it now",
                path,
                pos,
                size,
                problem,
            )
            break
        out.append((t, flags, pa.ipc.open_stream(payload).read_all()))
        pos = start + length
    return out


def read_journal(path: Path, log: logging.Logger = logger) -> pd.DataFrame | None:
    """Journal ``path`` as the table its consolidated parquet part would hold (None: no rows).

    Provisional records replaced by a later record of the same ``t`` are dropped. Runs of
    records with the same columns are joined in Arrow (fast); when the columns differ the
    pieces are joined in pandas and passed through Arrow once, as a parquet round trip
    would, so a killed run's table has the dtypes the finished run's would have.
    """
    records = read_records(path, log)
    keep: list[pa.Table | None] = []
    provisional: dict[int, int] = {}
    for t, flags, table in records:
        if t in provisional:  # this record replaces the visit's provisional rows
            keep[provisional.pop(t)] = None
        if flags & PROVISIONAL:
            provisional[t] = len(keep)
        keep.append(table)
    tables = [t for t in keep if t is not None and t.num_rows]
    if not tables:
        return None
    groups: list[list[pa.Table]] = []
    for table in tables:
        if groups and groups[-1][0].schema.equals(table.schema):
            groups[-1].append(table)
        else:
            groups.append([table])
    frames = [pa.concat_tables(group).to_pandas() for group in groups]
    if len(frames) == 1:
        return frames[0]
    joined = pd.concat(frames, ignore_index=True)
    return pa.Table.from_pandas(joined, preserve_index=False).to_pandas()


def part_files(folder: Path) -> list[Path]:
    """A FOV folder's parts in ``k`` order: ``part-<k>.parquet``, else ``part-<k>.journal``."""
    if not folder.is_dir():
        return []
    parts: dict[int, Path] = {}
    for path in folder.iterdir():
        m = PART.match(path.name)
        if m and (int(m.group(1)) not in parts or m.group(2) == "parquet"):
            parts[int(m.group(1))] = path
    return [parts[k] for k in sorted(parts)]


def read_part(path: Path, log: logging.Logger = logger) -> pd.DataFrame | None:
    """One part's rows (None: none). A journal consolidated meanwhile is read as parquet."""
    if path.suffix == ".journal":
        try:
            return read_journal(path, log)
        except FileNotFoundError:  # consolidated between listing and reading
            path = path.with_suffix(".parquet")
    return pd.read_parquet(path)


def read_fov(folder: Path, log: logging.Logger = logger) -> list[pd.DataFrame]:
    """The tables of a FOV folder's parts in order; an unreadable part is skipped.

    Skipped parts and torn records are warnings on ``log`` (the reader's logger).
    """
    frames = []
    for part in part_files(folder):
        try:
            table = read_part(part, log)
        except Exception as exc:  # pyarrow raises several types for broken files
            log.warning("skipped unreadable tracks part %s: %s", part, exc)
            continue
        if table is not None and len(table):
            frames.append(table)
    return frames
