"""A run whose process is killed (SIGKILL) mid-way is readable up to its last visit, and
keeps the analysis of every visit whose summary was logged."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from faro_bluesky.analysis._journal import encode
from faro_bluesky.devices import frames_written
from faro_bluesky.storage import Catalog, LoggedDocument, read_document_log, writer_alive

SCRIPT = Path(__file__).with_name("_killed_run.py")
EVENTS_BEFORE_KILL = 15
ANALYSED_BEFORE_KILL = 8


def _logged_events(path: Path) -> int:
    logs = list((path / "documents").glob("*.jsonl"))
    if not logs:
        return 0
    return logs[0].read_text().count('"name": "event"')


def _run_and_kill(path: Path, until: Callable[[Path], bool], *args: str) -> None:
    """Run the script into the catalog at ``path``; SIGKILL it once ``until(path)``."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while not until(path):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)  # polling the log for the condition, with a deadline
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def test_killed_run_is_readable_up_to_its_last_completed_visit(tmp_path):
    path = tmp_path / "catalog"
    _run_and_kill(path, lambda p: _logged_events(p) >= EVENTS_BEFORE_KILL)

    (log,) = (path / "documents").glob("*.jsonl")
    uid = log.stem
    assert not writer_alive(log)  # the killed writer's lock is gone with it
    logged = list(read_document_log(log))
    assert logged[-1].name != "stop"
    descriptors = {i.doc["uid"]: i.doc["name"] for i in logged if i.name == "descriptor"}
    frames_logged = [
        (i.doc["data"]["visit-t"], i.doc["data"]["visit-p"], i.doc["data"]["visit-kind"])
        for i in logged
        if i.name == "event" and descriptors[i.doc["descriptor"]] == "primary"
    ]
    masks_logged = sum(
        1 for i in logged if i.name == "event" and descriptors[i.doc["descriptor"]] == "mask"
    )
    assert len(frames_logged) >= EVENTS_BEFORE_KILL - masks_logged

    # As the writer left it: tiled is written from a background thread, so it may lag.
    before = Catalog.local(path, recover=False)
    lagging = len(before[uid].frames) if uid in before else 0
    assert lagging <= len(frames_logged)
    assert before[uid].stop is None if uid in before else True

    # Frames are queued for the disk when their trigger completes: the few still queued
    # at the kill are logged but not on disk, and recovery leaves them out (and says so).
    # (the array's shape grows ahead of the frames: its stored chunks are the frames)
    array_path = next((path / "data").rglob("*.zarr")) / "camera"
    n_on_disk = frames_written(array_path)
    on_disk = zarr.open_array(array_path, mode="r")
    assert n_on_disk <= on_disk.shape[0]
    kept = frames_logged[:n_on_disk]
    assert len(frames_logged) - len(kept) <= 64  # at most the writer's queue

    catalog = Catalog.local(path)  # opening rebuilds runs whose writer died
    run = catalog[uid]
    assert run.exit_status == "fail"
    assert "recovered" in run.stop["reason"]
    if len(kept) < len(frames_logged):
        assert "left out" in run.stop["reason"]
    frames = run.frames
    assert list(frames[["t", "p", "kind"]].itertuples(index=False, name=None)) == kept
    assert run.stop["num_events"] == {"primary": len(kept), "mask": masks_logged}

    # every visit but possibly the last is complete (2 imaging channels, stim when due)
    visits = frames.groupby(["t", "p"], sort=False)
    complete = [
        (g.kind == "image").sum() == 2 and (g.kind == "stim").sum() == (t % 3 == 1)
        for (t, _), g in visits
    ]
    assert all(complete[:-1]) and len(complete) >= 3

    assert n_on_disk == len(frames)
    np.testing.assert_array_equal(run.raw(via="tiled").compute(), on_disk[: len(frames)])
    assert Catalog.local(path).recover() == []  # rebuilt once, complete now


def _logged(path: Path) -> list[LoggedDocument]:
    logs = list((path / "documents").glob("*.jsonl"))
    return list(read_document_log(logs[0])) if logs else []


def _summaries(logged: list[LoggedDocument]) -> list[dict]:
    """The data of the ``analysis`` events (one per analysed visit), in log order."""
    analysis = {
        i.doc["uid"] for i in logged if i.name == "descriptor" and i.doc["name"] == "analysis"
    }
    return [i.doc["data"] for i in logged if i.name == "event" and i.doc["descriptor"] in analysis]


def _analysed_with_cells(path: Path) -> int:
    return sum(1 for s in _summaries(_logged(path)) if s["analysis-n_cells"] > 0)


def test_killed_closed_loop_keeps_the_tracks_of_every_visit_whose_summary_was_logged(tmp_path):
    path = tmp_path / "catalog"
    _run_and_kill(path, lambda p: _analysed_with_cells(p) >= ANALYSED_BEFORE_KILL, "analyze")

    (log,) = (path / "documents").glob("*.jsonl")
    summaries = _summaries(list(read_document_log(log)))
    assert sum(s["analysis-n_cells"] > 0 for s in summaries) >= ANALYSED_BEFORE_KILL

    run = Catalog.local(path)[log.stem]  # recovered from the raw log
    assert run.exit_status == "fail"
    tracks = run.tracks()
    rows = tracks.groupby(["fov", "t"]).size()
    for s in summaries:  # every visit whose summary was logged has all its rows, once
        visit = (s["analysis-fov"], s["analysis-t"])
        assert rows.get(visit, 0) == s["analysis-n_cells"], visit
    assert {"particle", "x", "y", "area", "cnr", "lit", "phase"} <= set(tracks.columns)
    assert tracks["lit"].notna().any() and tracks["lit"].isna().any()  # stim visits only
    assert run.label_names  # labels survived too
    # ... and the rebuilt run carries them, as the live run's stop would have (decision 0053)
    assert run.phases == ["long"]
    pd.testing.assert_frame_equal(run.tracks(via="tiled"), tracks)
    n = len(run.frames)
    for name in run.label_names:
        np.testing.assert_array_equal(
            run.labels(name, via="tiled").compute(), run.labels(name, via="zarr")[:n].compute()
        )

    # Not consolidated (no clean finish): the rows are in the per-FOV journals.
    parts = [part for fov in run.store.track_fovs() for part in run.store.track_parts(fov)]
    assert parts and all(part.suffix == ".journal" for part in parts)

    # A record torn by the kill (half written) is skipped, not fatal.
    last = parts[-1]
    fov = int(last.parent.name.removeprefix("fov_"))
    record = encode(10**6, run.tracks(fov))
    with last.open("ab") as f:
        f.write(record[: len(record) // 2])
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("faro_bluesky.storage._store")
    logger.addHandler(handler)
    try:
        again = run.tracks()
    finally:
        logger.removeHandler(handler)
    pd.testing.assert_frame_equal(again, tracks)
    assert any("torn record" in m and last.name in m for m in seen)
