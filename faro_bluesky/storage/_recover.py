"""Rebuild catalog entries from raw document logs (a killed writer, a failed catalog write).

The catalog is written from a background thread (`CatalogWriter`), so a process killed
mid-run can leave the catalog a few documents behind its raw log, which is flushed per
document. Rebuilding replaces the run's catalog entry with one written from the log
(external zarr stores are only referenced, never deleted or copied). A log without a stop
document gets one, ``exit_status="fail"``, whose reason says the run was recovered: tiled
writes its buffered tables at the stop, and readers should see that the run ended
abnormally. The log itself is never modified.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ._doclog import last_document_name, read_document_log, writer_alive

logger = logging.getLogger(__name__)

RECOVERED_REASON = (
    "recovered from the raw document log: the writing process ended before the run did "
    "(e.g. it was killed); everything logged until then is here"
)
_INGEST_BATCH = 10_000  # events per catalog write when rebuilding (nobody reads it live)


def ingest_log(client: Any, log: Path) -> str:
    """Write the run in ``log`` into the catalog ``client``, replacing any entry; its uid."""
    from bluesky_tiled_plugins import TiledWriter
    from event_model import compose_stop

    items = list(read_document_log(log))
    if not items or items[0].name != "start":
        raise ValueError(f"{log} does not begin with a start document: not a run's log")
    start = items[0].doc
    uid = start["uid"]
    if uid in client:
        client.delete_contents(uid, recursive=True, external_only=False)
    writer = TiledWriter(client, batch_size=_INGEST_BATCH)
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    stopped = False
    for item in items:
        if item.name == "descriptor":
            names[item.doc["uid"]] = item.doc["name"]
        elif item.name == "event":
            stream = names.get(item.doc["descriptor"], "")
            counts[stream] = counts.get(stream, 0) + 1
        stopped |= item.name == "stop"
        writer(item.name, item.doc)
    if not stopped:
        last = items[-1].received
        stop = compose_stop(
            start=start,
            event_counters={k: n + 1 for k, n in counts.items()},  # next seq_num, as RE
            poison_pill=[],
            exit_status="fail",
            reason=RECOVERED_REASON,
            uid=None,
            time=last,
        )
        writer("stop", dict(stop))
    client[uid].update_metadata({"faro": {"recovered_from_log": True, "documents": len(items)}})
    logger.info("rebuilt run %s from %s (%d documents)", uid, log, len(items))
    return uid


def recover_runs(client: Any, log_dir: Path) -> list[str]:
    """Rebuild every run of ``log_dir`` whose writer died and that lacks a complete entry."""
    from tiled.queries import KeyPresent

    logs = sorted(log_dir.glob("*.jsonl"))
    if not logs:
        return []
    known = set(client)
    unfinished = set(client.search(KeyPresent("stop", False))) if known else set()
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
            ingest_log(client, log)
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
