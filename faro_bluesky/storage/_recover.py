"""Rebuild catalog entries from raw document logs (a killed writer, a failed catalog write).

The catalog is written from a background thread (`CatalogWriter`), so a process killed
mid-run can leave the catalog a few documents behind its raw log, which is flushed per
document. Rebuilding replaces the run's catalog entry with one written from the log
(external zarr stores are only referenced, never deleted or copied). A log without a stop
document gets one, ``exit_status="fail"``, whose reason says the run was recovered: tiled
writes its buffered tables at the stop, and readers should see that the run ended
abnormally. The log itself is never modified. A log without the run's analysis streams
(``labels``, ``tracks``: a killed run never reached its stop, where they are recorded) gets
them from the run's store, as the live run would have; and the run's phases are recorded as
the live writer records them (`_phases`).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ._analysis import AnalysisFollower
from ._doclog import last_document_name, read_document_log, writer_alive
from ._phases import PHASES, run_phases

logger = logging.getLogger(__name__)

RECOVERED_REASON = (
    "recovered from the raw document log: the writing process ended before the run did "
    "(e.g. it was killed); everything logged until then is here"
)
_INGEST_BATCH = 10_000  # events per catalog write when rebuilding (nobody reads it live)


def _frames_on_disk(uri: str) -> int:
    """How many frames the zarr array at ``uri`` has on disk (0 if it cannot be opened)."""
    from ..devices import frames_written, path_from_uri

    try:
        return frames_written(path_from_uri(uri))
    except Exception:
        return 0


def _drop_unwritten(items: list[Any]) -> tuple[list[Any], int]:
    """Leave out frames the log announces but the disk lacks; the items kept, frames lost.

    The camera's trigger completes when a frame is queued for its zarr writer, so a
    process killed mid-run can log a frame's stream datum and event while the frame was
    still queued (docs/durability.md). Such stream datums are cut to the frames on disk
    and their events left out, so the rebuilt run never points at pixels that do not exist.
    """
    on_disk: dict[str, int] = {}
    lost: dict[str, set[int]] = {}  # descriptor uid -> seq_nums of frames not on disk
    kept: list[Any] = []
    n_lost = 0
    for item in items:
        doc = item.doc
        if item.name == "stream_resource":
            on_disk[doc["uid"]] = _frames_on_disk(doc.get("uri", ""))
        elif item.name == "stream_datum":
            have = on_disk.get(doc["stream_resource"])
            start, stop = doc["indices"]["start"], doc["indices"]["stop"]
            if have is not None and stop > have:
                cut = max(start, have)
                first_seq = doc["seq_nums"]["start"] + (cut - start)
                lost.setdefault(doc["descriptor"], set()).update(
                    range(first_seq, doc["seq_nums"]["stop"])
                )
                n_lost += stop - cut
                if cut == start:
                    continue
                doc = {
                    **doc,
                    "indices": {"start": start, "stop": cut},
                    "seq_nums": {"start": doc["seq_nums"]["start"], "stop": first_seq},
                }
                item = item._replace(doc=doc)
        kept.append(item)
    if not n_lost:
        return items, 0
    out = [
        i
        for i in kept
        if not (i.name == "event" and i.doc["seq_num"] in lost.get(i.doc["descriptor"], ()))
    ]
    return out, n_lost


def _remove_internal_arrays(arrays_dir: Path, uid: str) -> None:
    """Delete tiled's own arrays of run ``uid`` (``<arrays_dir>/<uid>``) before rebuilding it.

    Tiled creates an internal array's storage (e.g. the ``mask`` stream's ``mask-mask``)
    before it commits the array's node, so a writer killed in between leaves storage no node
    owns: deleting the run's entry does not remove it, and rebuilding the run then fails on
    "an array exists". Everything under that directory is rewritten from the log.
    """
    folder = (arrays_dir / uid).resolve()
    if folder.parent != arrays_dir.resolve():
        return  # a uid that is not one path component: touch nothing
    if folder.is_dir():
        shutil.rmtree(folder)


def _analysis_documents(items: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The analysis streams a log lacks, from the run's store (none if it has them)."""
    follower = AnalysisFollower()
    for item in items:
        if item.name != "stop":
            follower.feed(item.name, item.doc)
    try:
        return follower.before_stop({"run_start": items[0].doc["uid"]})
    except Exception:
        logger.exception("run %s: its labels and tracks could not be added", items[0].doc["uid"])
        return []


def ingest_log(client: Any, log: Path, *, arrays_dir: Path | None = None) -> str:
    """Write the run in ``log`` into the catalog ``client``, replacing any entry; its uid.

    ``arrays_dir``: the catalog's directory of tiled's own arrays (embedded catalogs),
    cleared of the run's leftovers first.
    """
    from bluesky_tiled_plugins import TiledWriter
    from event_model import compose_stop

    items = list(read_document_log(log))
    if not items or items[0].name != "start":
        raise ValueError(f"{log} does not begin with a start document: not a run's log")
    start = items[0].doc
    uid = start["uid"]
    stopped = any(item.name == "stop" for item in items)
    n_lost = 0
    if not stopped:
        items, n_lost = _drop_unwritten(items)
    if uid in client:
        client.delete_contents(uid, recursive=True, external_only=False)
    if arrays_dir is not None:
        _remove_internal_arrays(arrays_dir, uid)
    derived = _analysis_documents(items)
    writer = TiledWriter(client, batch_size=_INGEST_BATCH)
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for item in items:
        if item.name == "stop":
            for name, doc in derived:
                writer(name, doc)
        if item.name == "descriptor":
            names[item.doc["uid"]] = item.doc["name"]
        elif item.name == "event":
            stream = names.get(item.doc["descriptor"], "")
            counts[stream] = counts.get(stream, 0) + 1
        writer(item.name, item.doc)
    if not stopped:
        for name, doc in derived:
            writer(name, doc)
        last = items[-1].received
        stop = compose_stop(
            start=start,
            event_counters={k: n + 1 for k, n in counts.items()},  # next seq_num, as RE
            poison_pill=[],
            exit_status="fail",
            reason=RECOVERED_REASON
            + (
                f"; {n_lost} frame(s) logged but still queued for writing were not on "
                "disk and are left out"
                if n_lost
                else ""
            ),
            uid=None,
            time=last,
        )
        writer("stop", dict(stop))
    phases = run_phases([(i.name, i.doc) for i in items] + derived) or []
    client[uid].update_metadata(
        {"faro": {"recovered_from_log": True, "documents": len(items), PHASES: phases}}
    )
    logger.info("rebuilt run %s from %s (%d documents)", uid, log, len(items))
    return uid


def recover_runs(client: Any, log_dir: Path, *, arrays_dir: Path | None = None) -> list[str]:
    """Rebuild every run of ``log_dir`` whose writer died and that lacks a complete entry."""
    from tiled.queries import KeyPresent

    logs = sorted(log_dir.glob("*.jsonl"))
    if not logs:
        return []
    known = set(client)
    # "stop.uid", not "stop": a CatalogOfBlueskyRuns client reads a key outside start./stop.
    # as a start-document field ("start.stop"), which every run lacks
    unfinished = set(client.search(KeyPresent("stop.uid", False))) if known else set()
    rebuilt = []
    for log in logs:
        uid = log.stem
        if uid in known and uid not in unfinished:
            continue  # complete in the catalog
        if writer_alive(log):
            continue  # a live process is still writing it
        if uid not in known and last_document_name(log) is None:
            continue  # an empty log: nothing to rebuild
        t0 = time.perf_counter()
        try:
            ingest_log(client, log, arrays_dir=arrays_dir)
        except Exception:
            logger.exception("could not rebuild run %s from %s", uid, log)
            continue
        logger.warning(
            "run %s was incomplete in the catalog; rebuilt from its raw log in %.1f s",
            uid,
            time.perf_counter() - t0,
        )
        rebuilt.append(uid)
    return rebuilt
