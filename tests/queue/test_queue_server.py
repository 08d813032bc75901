"""Experiments through the real queue server: Python API, HTTP server and ``qserver`` CLI.

Each queued plan reads the profile's gate once per visit, so the test holds a run in
the middle of its first visit, acts (pause, stop, abort), and lets it go on: what the
run did is then checked in the catalog, the RE Manager's history and the 0MQ stream.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TIMEOUT, Queue

from faro_bluesky.plans import Channel, Phase, RunState
from faro_bluesky.queue import QueueRunHandle, submit
from faro_bluesky.queue._handle import QUEUED
from faro_bluesky.storage import Catalog

PHASES = [  # queue items are JSON: phases as experiment_to_json writes them
    {
        "name": "base",
        "interval": 0.1,
        "n_frames": 3,
        "channels": [{"config": "miRFP", "exposure": 5}],
    },
]


def _catalog_run(queue: Queue, uid: str, streams: list[str] | None = None):
    """The run's exit status and number of frames, as the catalog has them."""
    catalog = Catalog.local(queue.data, recover=False)
    try:
        run = catalog[uid]
        if streams is not None:
            streams += run.streams
        return run.exit_status, len(run.frames)
    finally:
        catalog.close()


def _history_status(queue: Queue, handle: QueueRunHandle) -> str:
    item = handle.history_item()
    assert item is not None
    return item["result"]["exit_status"]


def test_profile_gives_the_allowed_plans_and_devices(queue: Queue) -> None:
    plans = queue.api.plans_allowed()["plans_allowed"]
    assert {"gated_snaps", "optogenetic_plan", "calibrate_dmd", "count", "scan"} <= set(plans)
    devices = queue.api.devices_allowed()["devices_allowed"]
    assert {"stage", "camera", "gate"} <= set(devices)
    assert "scope" not in devices  # a container, filled in by the plans' wrapper
    params = {p["name"]: p for p in plans["gated_snaps"]["parameters"]}
    assert "scope" not in params
    assert params["imaging"]["default"] == repr(
        {"config": "miRFP", "exposure": 5.0, "power": None, "group": None}
    )


def test_pause_resume_and_finish_through_the_python_api(queue: Queue) -> None:
    handle = submit(
        queue.api,
        "optogenetic_plan",
        [[0.0, 0.0]],
        PHASES,
        per_visit=["gate"],
        md={"sample": "queue-test"},
    )
    seen: dict[object, threading.Event] = {s: threading.Event() for s in [*RunState, "queued"]}
    handle.statusChanged.connect(lambda state: seen[state].set())
    handle.watch()
    conn, line = queue.gate.next_read()  # the run is in its first visit
    assert line.startswith("read")
    assert handle.status() is RunState.RUNNING
    handle.pause()  # deferred: at the checkpoint before the next visit
    queue.api.wait_for_condition(lambda s: s["pause_pending"], timeout=TIMEOUT)
    queue.gate.answer(conn)
    queue.api.wait_for_idle_or_paused(timeout=TIMEOUT)
    assert handle.status() is RunState.PAUSED
    assert seen[RunState.PAUSED].wait(TIMEOUT)  # the watcher announced it
    (uid,) = handle.uids
    handle.resume()
    queue.gate.pass_reads(2)
    result = handle.wait(timeout=TIMEOUT)
    assert seen[RunState.DONE].wait(TIMEOUT)

    assert result.exit_status == "success" and not result.interrupted
    assert result.run_start_uids == (uid,)
    assert handle.status() is RunState.DONE
    assert _history_status(queue, handle) == "completed"
    streams: list[str] = []
    assert _catalog_run(queue, uid, streams) == ("success", 3)  # every frame once, no repeat
    # the worker's session wired the baseline, the per-visit gate and the analyzer
    assert {"primary", "baseline", "per_visit", "analysis"} <= set(streams), streams
    # followed over 0MQ: the worker publishes to the proxy
    stop = queue.remote.stop_of(uid)
    assert stop is not None and stop["exit_status"] == "success"
    assert (
        next(d for n, d in queue.remote.docs if n == "start" and d["uid"] == uid)["sample"]
        == "queue-test"
    )


def test_a_running_experiment_is_extended_through_its_handle(queue: Queue) -> None:
    handle = submit(queue.api, "optogenetic_plan", [[0.0, 0.0]], PHASES, per_visit=["gate"])
    conn, line = queue.gate.next_read()  # held in its first visit
    assert line.startswith("read")
    more = Phase("more", interval=0.1, n_frames=2, channels=[Channel("miRFP", 5)])
    assert handle.extend(more) == 3 + 2  # validated and appended in the worker
    with pytest.raises(RuntimeError, match="GFP"):  # a bad edit is refused there, named
        handle.extend(Phase("bad", interval=0.1, n_frames=1, channels=[Channel("GFP", 5)]))
    queue.gate.answer(conn)
    queue.gate.pass_reads(4)
    result = handle.wait(timeout=TIMEOUT)
    assert result.exit_status == "success"
    catalog = Catalog.local(queue.data, recover=False)
    try:
        run = catalog[result.run_start_uids[0]]
        assert len(run.frames) == 5
        assert list(run.frames["phase"].unique()) == ["base", "more"]
    finally:
        catalog.close()


def _hold_paused(queue: Queue, pause: Callable[[], object]) -> None:
    """In the first visit of a gated run: ask ``pause`` (deferred), let the visit end."""
    conn, line = queue.gate.next_read()
    assert line.startswith("read")
    pause()
    queue.api.wait_for_condition(lambda s: s["pause_pending"], timeout=TIMEOUT)
    queue.gate.answer(conn)
    queue.api.wait_for_idle_or_paused(timeout=TIMEOUT)


def test_stop_through_the_python_api(queue: Queue) -> None:
    # Paused between visits, not inside one: an immediate pause inside a reading
    # (trigger_and_read) followed by a stop fails the run when a baseline is read at its
    # end (bluesky: "A second 'create' message..."), in the shell as well.
    handle = submit(queue.api, "optogenetic_plan", [[0.0, 0.0]], PHASES, per_visit=["gate"])
    _hold_paused(queue, handle.pause)
    handle.stop()
    result = handle.wait(timeout=TIMEOUT)

    assert result.exit_status == "success" and result.interrupted
    assert handle.status() is RunState.STOPPED
    assert _history_status(queue, handle) == "stopped"
    assert _catalog_run(queue, result.run_start_uids[0]) == ("success", 1)


def test_item_added_over_http_and_aborted_with_qserver(queue: Queue) -> None:
    http = queue.http_api()
    try:
        handle = submit(http, "gated_snaps", gate="gate", frames=3)
        assert handle.status() in (QUEUED, RunState.RUNNING)
        _hold_paused(queue, lambda: _qserver(queue, "re", "pause", "deferred"))
        assert handle.status() is RunState.PAUSED
        _qserver(queue, "re", "abort")
        result = handle.wait(timeout=TIMEOUT)
        assert result.exit_status == "abort"
        assert handle.status() is RunState.ABORTED
        assert _history_status(queue, handle) == "aborted"
        assert _catalog_run(queue, result.run_start_uids[0]) == ("abort", 1)
    finally:
        queue.api.queue_clear()  # the RE Manager put a copy of the aborted item back
        http.close()


def test_a_queued_item_is_taken_out_by_stop(queue: Queue) -> None:
    handle = submit(queue.api, "count", ["camera"], start=False)
    assert handle.status() == QUEUED
    handle.stop()
    assert handle.status() is RunState.STOPPED
    assert queue.api.queue_get()["items"] == []


def _qserver(queue: Queue, *command: str) -> None:
    script = shutil.which("qserver", path=str(Path(sys.executable).parent))
    assert script is not None
    subprocess.run(
        [script, "-a", queue.control, *command],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
