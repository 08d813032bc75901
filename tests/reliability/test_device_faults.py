"""A camera or stage hiccup costs one visit, never the run; persistent faults end it clearly."""

from __future__ import annotations

import asyncio
import gc
import logging

import bluesky.plans as bp
import pytest
import zarr

from faro_bluesky.callbacks import StatusCallback
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.plans._errors import DeviceFault

IMG = [Channel("miRFP", 5)]
FOVS = [(0.0, 0.0), (400.0, 0.0)]


def stream(docs, name):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == name}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def stored_frames(docs):
    (resource,) = docs.of("stream_resource")
    return zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r").shape[0]


def test_a_transient_snap_failure_is_retried_inside_the_camera(RE, docs, scope):
    scope.sim.faults.camera_fail_frames.update({2, 5})
    result = RE(bp.count([scope.camera], num=6))
    assert result.exit_status == "success"
    assert len(docs.of("event")) == 6 == stored_frames(docs)
    assert scope.camera.retried == 2


def test_a_frame_that_cannot_be_taken_misses_its_visit_and_the_run_goes_on(RE, docs, scope):
    scope.camera.retries = 0  # every failure reaches the plan
    scope.sim.faults.camera_fail_frames.add(3)  # the 4th snap: visit t=1, FOV 1
    status = StatusCallback(RE=RE, tick_s=None)
    RE.subscribe(status)
    phase = Phase("p", interval=0.05, n_frames=4, channels=IMG)
    result = RE(optogenetic_plan(FOVS, [phase], microscope=scope, analyzer=None))
    assert result.exit_status == "success"
    (miss,) = stream(docs, "missed")
    assert (miss["data"]["visit-t"], miss["data"]["visit-p"]) == (1, 1)
    assert miss["data"]["missed-device"] == "camera"
    assert "simulated camera failure at frame 3" in miss["data"]["missed-reason"]
    frames = [(e["data"]["visit-t"], e["data"]["visit-p"]) for e in stream(docs, "primary")]
    assert frames == [(t, p) for t in range(4) for p in range(2) if (t, p) != (1, 1)]
    assert stored_frames(docs) == 7
    assert any("visit missed: FOV 1 t=1" in e for e in status.snapshot.errors)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_persistent_camera_failure_ends_the_run_with_one_sentence(RE, docs, scope):
    scope.sim.faults.camera_fail_from = 2
    phase = Phase("p", interval=0.02, n_frames=10, channels=IMG)
    records = _Records()
    logging.getLogger("asyncio").addHandler(records)
    try:
        with pytest.raises(DeviceFault) as info:
            RE(optogenetic_plan(FOVS[:1], [phase], microscope=scope, analyzer=None))
        gc.collect()  # a never-retrieved task exception is logged when the task is freed
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), RE.loop).result()
    finally:
        logging.getLogger("asyncio").removeHandler(records)
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "fail"
    reason = stop["reason"]
    assert reason.startswith("camera failed: ") and "3 visits in a row" in reason
    assert "AsyncStatus" not in reason and "\n" not in reason
    assert len(stream(docs, "missed")) == 3
    assert len(stream(docs, "primary")) == 2 == stored_frames(docs)  # earlier frames kept
    assert str(info.value) == reason
    assert not [m for m in records.messages if "never retrieved" in m]


def test_a_stuck_stage_misses_that_fovs_visit_and_then_recovers(RE, docs, scope):
    scope.core.setTimeoutMs(200)
    fired = []

    def cb(name, doc):  # the stage sticks once the first visit of FOV 0 is taken
        if name == "event" and not fired and doc["data"].get("visit-p") == 0:
            fired.append(True)
            scope.sim.faults.stage_stuck = True

    def unstick(name, doc):  # ...and frees itself once its miss is recorded
        if name == "event" and "missed-device" in doc["data"]:
            scope.sim.faults.stage_stuck = False

    RE.subscribe(cb)
    RE.subscribe(unstick)
    phase = Phase("p", interval=0.05, n_frames=2, channels=IMG)
    result = RE(optogenetic_plan(FOVS, [phase], microscope=scope, analyzer=None))
    assert result.exit_status == "success"
    (miss,) = stream(docs, "missed")
    assert miss["data"]["missed-device"] == "stage"
    assert "still busy" in miss["data"]["missed-reason"]
    assert (miss["data"]["visit-t"], miss["data"]["visit-p"]) == (0, 1)
    frames = [(e["data"]["visit-t"], e["data"]["visit-p"]) for e in stream(docs, "primary")]
    assert frames == [(0, 0), (1, 0), (1, 1)]
