"""Camera sequences (fly scans), fail-fast faults and the in-memory frame handle."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
import zarr
from bluesky import Msg
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


def test_a_move_sent_during_a_snap_is_applied_once_its_exposure_ends(RE, docs, scope):
    """Decision 0069: the core's thread runs calls in order, so a preset (or a pattern)
    sent while a plain snap exposes is applied after it: never during the frame, and
    without a RunEngine round trip. A burst's frame or a device over another thread gives
    no such promise."""
    world = scope.sim.world
    world.record_frames()
    promised = []

    @bpp.stage_decorator([scope.camera])
    @bpp.run_decorator()
    def plan():
        yield from bps.mv(scope.channel, "miRFP")
        yield from bps.trigger_and_read([scope.camera])  # (the camera's first, prepared here)
        for preset in ("ERKKTR", "miRFP"):
            yield Msg("trigger", scope.camera, group="frame")
            camera = scope.camera
            promised.append(
                (
                    camera.after_exposure(scope.channel),
                    camera.after_exposure(scope.dmd),
                    camera.after_exposure(scope.stage.x),  # a signal: no core thread of its own
                )
            )
            yield Msg("set", scope.channel, preset, group="preset")  # while it exposes
            yield Msg("wait", None, group="frame")
            yield Msg("wait", None, group="preset")
            yield from bps.create()
            yield from bps.read(scope.camera)
            yield from bps.save()
        yield from bps.mv(scope.camera.sequence, 2)  # a burst: the sequence exposes
        yield Msg("trigger", scope.camera, group="burst")
        promised.append((scope.camera.after_exposure(scope.channel),))
        yield Msg("wait", None, group="burst")
        yield from bps.create()
        yield from bps.read(scope.camera)
        yield from bps.save()
        yield from bps.trigger_and_read([scope.camera])

    assert RE(plan()).exit_status == "success"
    assert promised == [(True, True, False), (True, True, False), (False,)]
    assert world.unsteady == []  # no frame saw its light path change
    (resource,) = docs.of("stream_resource")
    frames = [scope.camera.frames.get(resource["uri"], i) for i in range(3)]
    channels = [f.metadata["channel"] for f in frames]
    assert channels == ["miRFP", "miRFP", "ERKKTR"]  # each preset came after its frame
