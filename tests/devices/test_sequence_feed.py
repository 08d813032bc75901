"""Bursts: ``camera.sequence`` makes the next triggers take frames of one camera sequence."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
import zarr
from bluesky.utils import RunEngineInterrupted

from faro_bluesky.plans._stubs import trigger_and_read_complete

N = 24
EXPOSURE_MS = 25.0  # long enough that a pause lands while the camera sequence still runs


def burst(scope, n=N, *, arm=True):
    cam = scope.camera

    @bpp.stage_decorator([cam])
    @bpp.run_decorator()
    def inner():
        yield from bps.mv(cam.exposure, EXPOSURE_MS)
        if arm:
            yield from bps.mv(cam.sequence, n)
        for _ in range(n):
            yield from bps.checkpoint()
            yield from trigger_and_read_complete([cam])

    return bpp.rewindable_wrapper(inner(), False)


def frames_on_disk(docs):
    (resource,) = docs.of("stream_resource")
    return zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")[:, 0]


def check_once_in_order(docs, recorded, n=N):
    events = docs.of("event")
    assert [e["seq_num"] for e in events] == list(range(1, n + 1))
    ranges = [(d["indices"]["start"], d["indices"]["stop"]) for d in docs.of("stream_datum")]
    assert ranges == [(i, i + 1) for i in range(n)]
    disk = frames_on_disk(docs)
    assert disk.shape[0] == n
    # every stored frame is an exposure the camera really made, each once, in order
    where = [next(j for j, r in enumerate(recorded) if np.array_equal(r, f)) for f in disk]
    assert where == sorted(set(where))


def test_burst_takes_one_camera_sequence(RE, docs, scope):
    scope.sim.world.record_frames()
    result = RE(burst(scope))
    assert result.exit_status == "success"
    recorded = scope.sim.world.recorded
    assert len(recorded) == N  # N exposures, no snap besides the sequence
    check_once_in_order(docs, recorded)
    np.testing.assert_array_equal(frames_on_disk(docs), np.stack(recorded))
    feed = scope.camera._acquire.feed
    assert feed.starts == 1 and feed.armed == 0


def test_without_arming_each_trigger_snaps(RE, docs, scope):
    scope.sim.world.record_frames()
    RE(burst(scope, arm=False))
    assert scope.camera._acquire.feed.starts == 0
    np.testing.assert_array_equal(frames_on_disk(docs), np.stack(scope.sim.world.recorded))


@pytest.mark.parametrize("defer", [True, False])
@pytest.mark.parametrize("after", [1, 5, N // 2])
def test_pause_in_a_burst_takes_no_frame_twice_and_loses_none(RE, docs, scope, defer, after):
    scope.sim.world.record_frames()
    seen = {"n": 0, "paused_with": None}

    def cb(name, doc):
        if name == "event":
            seen["n"] += 1
            if seen["n"] == after:
                threading.Thread(target=RE.request_pause, kwargs={"defer": defer}).start()

    RE.subscribe(cb)
    with pytest.raises(RunEngineInterrupted):
        RE(burst(scope))
    assert RE.state == "paused"
    exposed_while_paused = len(scope.sim.world.recorded)
    assert not scope.core.isSequenceRunning()  # the camera is not exposing while paused
    result = RE.resume()
    assert result.exit_status == "success"
    assert exposed_while_paused <= len(scope.sim.world.recorded)
    check_once_in_order(docs, scope.sim.world.recorded)
    # a sequence with frames to go at the pause was stopped there and restarted after it
    assert scope.camera._acquire.feed.starts == (2 if exposed_while_paused < N else 1)


def test_abort_in_a_burst_keeps_every_recorded_frame(RE, docs, scope):
    scope.sim.world.record_frames()

    def cb(name, doc):
        if name == "event" and doc["seq_num"] == 4:
            threading.Thread(target=RE.request_pause, kwargs={"defer": True}).start()

    RE.subscribe(cb)
    with pytest.raises(RunEngineInterrupted):
        RE(burst(scope))
    RE.abort("test")
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == "abort"
    check_once_in_order(docs, scope.sim.world.recorded, n=stop["num_events"]["primary"])
    assert not scope.core.isSequenceRunning()
    assert scope.camera._acquire.feed.armed == 0  # unstage disarmed the burst


def test_a_long_burst_runs_in_chunks_so_the_camera_never_overruns_its_buffer(
    RE, docs, scope, monkeypatch
):
    import faro_bluesky.devices._sequence as sequence

    frame_bytes = scope.core.getImageBufferSize()
    monkeypatch.setattr(sequence, "_CHUNK_BYTES", 10 * frame_bytes)  # 10 frames ahead at most
    scope.sim.world.record_frames()
    RE(burst(scope))
    feed = scope.camera._acquire.feed
    assert feed.starts == -(-N // 10)  # ceil(24 / 10) sequences, one after the other
    check_once_in_order(docs, scope.sim.world.recorded)
    np.testing.assert_array_equal(frames_on_disk(docs), np.stack(scope.sim.world.recorded))
