"""Camera sequences (fly scans), fail-fast faults and the in-memory frame handle."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
import zarr
from bluesky.utils import FailedStatus
from ophyd_async.core import TriggerInfo

from faro_bluesky.devices import Frame


def fly(camera, n):
    @bpp.stage_decorator([camera])
    @bpp.run_decorator()
    def inner():
        yield from bps.prepare(camera, TriggerInfo(number_of_events=n), wait=True)
        yield from bps.declare_stream(camera, name="primary", collect=True)
        yield from bps.kickoff(camera, wait=True)
        yield from bps.complete(camera, wait=True)
        yield from bps.collect(camera, name="primary")

    return inner()


def test_burst_goes_through_a_camera_sequence(RE, docs, scope):
    scope.sim.world.record_frames()
    result = RE(fly(scope.camera, 6))
    assert result.exit_status == "success"
    (resource,) = docs.of("stream_resource")
    datum_ranges = [(d["indices"]["start"], d["indices"]["stop"]) for d in docs.of("stream_datum")]
    assert datum_ranges[-1][1] == 6
    array = zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")
    assert array.shape == (6, 1, 256, 256)
    for i, frame in enumerate(scope.sim.world.recorded):
        np.testing.assert_array_equal(array[i, 0], frame)


def test_camera_fault_fails_the_run_fast_and_keeps_earlier_frames(RE, docs, scope):
    import bluesky.plans as bp

    scope.camera.retries = 0  # (a retried transient fault: tests/reliability)
    scope.sim.faults.camera_fail_frames.add(3)
    with pytest.raises(Exception, match="simulated camera failure at frame 3"):
        RE(bp.count([scope.camera], num=6))
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "fail"
    (resource,) = docs.of("stream_resource")
    array = zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")
    assert array.shape[0] == 3  # frames 0-2 are on disk
    assert len(docs.of("event")) == 3
    # transient: the next run works
    assert RE(bp.count([scope.camera], num=2)).exit_status == "success"


def test_persistent_camera_fault(RE, scope):
    import bluesky.plans as bp

    scope.sim.faults.camera_fail_from = 0
    for _ in range(2):
        with pytest.raises(Exception, match="simulated camera failure"):
            RE(bp.count([scope.camera], num=1))


def test_stuck_stage_times_out_with_advice(RE, scope):
    scope.sim.faults.stage_stuck = True
    scope.core.setTimeoutMs(200)
    with pytest.raises(FailedStatus, match=r"still busy 0\.2 s.*setTimeoutMs") as info:
        RE(bps.mv(scope.stage, (100, 100)))
    assert isinstance(info.value.__cause__, TimeoutError)


def test_frames_signal_and_lookup(RE, scope):
    import bluesky.plans as bp

    seen: list[Frame] = []
    scope.camera.frames.frame_added.connect(seen.append)
    RE(bp.count([scope.camera], num=3))
    assert [f.index for f in seen] == [0, 1, 2]
    assert scope.camera.frames.latest is seen[-1]
    assert seen[0].exposure_ms == 10.0
    assert seen[0].metadata["channel"] == "BF"
    assert scope.camera.frames.get(seen[0].uri, 1) is seen[1]
    assert scope.camera.frames.get("nowhere", 0) is None
