"""A run whose process is killed (SIGKILL) mid-way is readable up to its last visit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

from faro_bluesky.storage import Catalog, read_document_log, writer_alive

SCRIPT = Path(__file__).with_name("_killed_run.py")
EVENTS_BEFORE_KILL = 15


def _logged_events(path: Path) -> int:
    logs = list((path / "documents").glob("*.jsonl"))
    if not logs:
        return 0
    return logs[0].read_text().count('"name": "event"')


def test_killed_run_is_readable_up_to_its_last_completed_visit(tmp_path):
    path = tmp_path / "catalog"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while _logged_events(path) < EVENTS_BEFORE_KILL:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)  # polling the log for the condition, with a deadline
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

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
    on_disk = zarr.open_array(next((path / "data").rglob("*.zarr")) / "camera", mode="r")
    kept = frames_logged[: on_disk.shape[0]]
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

    assert on_disk.shape[0] == len(frames)
    np.testing.assert_array_equal(run.raw(via="tiled").compute(), on_disk[: len(frames)])
    assert Catalog.local(path).recover() == []  # rebuilt once, complete now
