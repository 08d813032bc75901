"""``interval=0`` phases: bursts through one camera sequence, pauses and Ctrl-C included."""

from __future__ import annotations

import json
import os
import signal
import threading

import bluesky.plan_stubs as bps
import numpy as np
import pytest
import zarr
from bluesky.utils import FailedStatus, RunEngineInterrupted

from faro_bluesky.plans import Channel, Phase, optogenetic_plan, wait
from faro_bluesky.plans._bursts import burst_at
from faro_bluesky.plans._schedule import schedule

N = 30
BURST = Phase("burst", interval=0, n_frames=N, channels=[Channel("miRFP", 20)])


def primary(docs):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == "primary"}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def stored(docs):
    (resource,) = docs.of("stream_resource")
    return zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")[:, 0]


def test_which_visits_form_a_burst():
    fovs = [(0.0, 0.0), (400.0, 0.0)]
    two = [Channel("miRFP", 5), Channel("ERKKTR", 5)]
    cases = [
        ([BURST], fovs[:1], [N]),  # one FOV, one channel, interval 0: one burst
        ([BURST], fovs, [N, N]),  # as fast as possible: all of FOV 0, then all of FOV 1
        ([BURST.replace(channels=two)], fovs[:1], [1] * N),  # channel switches: step by step
        ([BURST.replace(interval=0.1)], fovs[:1], [1] * N),  # a schedule to keep
        ([BURST, wait(1), BURST], fovs[:1], [N, N]),  # a wait ends a burst
    ]
    for phases, f, expected in cases:
        sched = schedule(f, phases)
        runs, i = [], 0
        while i < len(sched):
            runs.append(max(1, burst_at(sched, i)))
            i += runs[-1]
        assert runs == expected, phases
    sched = schedule(fovs[:1], [BURST.replace(stim_channels=[Channel("Cyan", 5)], stim_frames=5)])
    assert burst_at(sched, 0) == 5  # frames 0-4; frame 5 stimulates


def test_several_channels_burst_only_when_the_devices_can_switch_them_in_the_sequence():
    fov = [(0.0, 0.0)]
    yes, no = (lambda presets: True), (lambda presets: False)
    two = [Channel("miRFP", 5), Channel("ERKKTR", 5)]
    assert burst_at(schedule(fov, [BURST.replace(channels=two)]), 0, yes) == N
    assert burst_at(schedule(fov, [BURST.replace(channels=two)]), 0, no) == 0
    slow = [Channel("miRFP", 5), Channel("ERKKTR", 50)]  # the camera cannot sequence exposure
    assert burst_at(schedule(fov, [BURST.replace(channels=slow)]), 0, yes) == 0
    powered = [Channel("miRFP", 5, 20), Channel("ERKKTR", 5)]  # a power is one more set
    assert burst_at(schedule(fov, [BURST.replace(channels=powered)]), 0, yes) == 0


BRIGHT, DIM = Channel("BF", 5), Channel("miRFP", 5)  # transmitted light is far brighter


def assert_each_frame_is_its_channel(events, frames):
    """A frame's event names the preset its pixels were really taken with."""
    means = {"BF": [], "miRFP": []}
    for e, f in zip(events, frames, strict=True):
        means[e["data"]["channel-config"]].append(float(f.mean()))
    assert means["BF"] and means["miRFP"]
    assert min(means["BF"]) > 2 * max(means["miRFP"])


def test_two_channels_switch_inside_one_camera_sequence(RE, docs, scope):
    scope.sim.world.record_frames()
    n = 8
    phases = [
        Phase("burst", interval=0, n_frames=n, channels=[BRIGHT, DIM]),
        Phase("after", interval=0, n_frames=1, channels=[DIM, BRIGHT]),  # step by step
    ]
    result = RE(optogenetic_plan([(0, 0)], phases, microscope=scope, analyzer=None))
    assert result.exit_status == "success"
    events = primary(docs)
    assert [e["data"]["channel-config"] for e in events] == ["BF", "miRFP"] * n + [
        "miRFP",
        "BF",
    ]
    assert [e["data"]["visit-c"] for e in events[: 2 * n]] == [0, 1] * n
    assert scope.camera._acquire.feed.starts == 1  # one sequence, no snap between frames
    frames = stored(docs)
    np.testing.assert_array_equal(frames, np.stack(scope.sim.world.recorded))
    # the frames after the burst really are in their presets: the sequence left no state
    assert_each_frame_is_its_channel(events, frames)
    assert scope.sim.world.optics.filter_sequence == []


@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "immediate"])
def test_pause_in_a_two_channel_burst_resumes_at_the_right_channel(RE, docs, scope, defer):
    scope.sim.world.record_frames()
    n, fired = 12, []

    def cb(name, doc):
        if name == "event" and doc["seq_num"] == 7 and not fired:  # mid-cycle: channel 0 next
            fired.append(True)
            threading.Thread(target=RE.request_pause, kwargs={"defer": defer}).start()

    RE.subscribe(cb)
    phase = Phase("burst", interval=0, n_frames=n, channels=[BRIGHT, DIM])
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
    assert not scope.core.isSequenceRunning()
    assert scope.sim.world.optics.filter_sequence == []  # the filter stops stepping too
    assert RE.resume().exit_status == "success"
    events = primary(docs)
    assert [e["seq_num"] for e in events] == list(range(1, 2 * n + 1))
    assert [e["data"]["channel-config"] for e in events] == ["BF", "miRFP"] * n
    frames = stored(docs)
    recorded = scope.sim.world.recorded
    where = [next(j for j, r in enumerate(recorded) if np.array_equal(r, f)) for f in frames]
    assert where == sorted(set(where))  # real exposures, once, in order
    assert_each_frame_is_its_channel(events, frames)


def test_channels_the_devices_cannot_sequence_go_step_by_step(RE, docs, tmp_path):
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(
        seed=1, data_dir=tmp_path / "d", image_shape=(128, 128), sequenceable_filter=False
    )
    try:
        assert not scope.camera.sequenceable(("BF", "miRFP"))
        with pytest.raises(FailedStatus) as failed:
            RE(bps.mv(scope.camera.sequence_channels, ["BF", "miRFP"]))
        error = failed.value.__cause__
        assert isinstance(error, ValueError), error
        assert "camera.sequence_channels=['BF', 'miRFP']" in str(error)
        assert "step by step" in str(error)
        phase = Phase("burst", interval=0, n_frames=4, channels=[BRIGHT, DIM])
        assert RE(optogenetic_plan([(0, 0)], [phase], microscope=scope)).exit_status == "success"
        events = primary(docs)
        assert [e["data"]["channel-config"] for e in events] == ["BF", "miRFP"] * 4
        assert scope.camera._acquire.feed.starts == 0  # snaps, no sequence
        assert_each_frame_is_its_channel(events, stored(docs))
    finally:
        scope.close()


def test_an_interval_zero_phase_runs_as_one_camera_sequence(RE, docs, scope):
    scope.sim.world.record_frames()
    result = RE(optogenetic_plan([(0, 0)], [BURST], microscope=scope, analyzer=None))
    assert result.exit_status == "success"
    events = primary(docs)
    assert [e["data"]["visit-t"] for e in events] == list(range(N))
    assert scope.camera._acquire.feed.starts == 1
    np.testing.assert_array_equal(stored(docs), np.stack(scope.sim.world.recorded))
    # every event says when its frame was exposed, in order, one exposure apart at most
    ends = [e["data"]["camera-timing-end"] for e in events]
    assert ends == sorted(ends)


@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "immediate"])
@pytest.mark.parametrize("after", [2, 11])
def test_pause_in_a_burst_keeps_every_frame_once(RE, docs, calibrated_scope, defer, after):
    scope = calibrated_scope
    scope.sim.world.record_frames()
    fired = []

    def cb(name, doc):
        if name == "event" and doc["seq_num"] == after and not fired:
            fired.append(True)
            threading.Thread(target=RE.request_pause, kwargs={"defer": defer}).start()

    RE.subscribe(cb)
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan([(0, 0)], [BURST], microscope=scope, analyzer=None))
    assert RE.state == "paused"
    assert not scope.core.isSequenceRunning()
    assert scope.core.getSLMImage().max() == 0
    result = RE.resume()
    assert result.exit_status == "success"
    events = primary(docs)
    assert [e["seq_num"] for e in events] == list(range(1, N + 1))
    assert [e["data"]["visit-t"] for e in events] == list(range(N))
    frames = stored(docs)
    recorded = scope.sim.world.recorded
    where = [next(j for j, r in enumerate(recorded) if np.array_equal(r, f)) for f in frames]
    assert len(frames) == N and where == sorted(set(where))  # real exposures, once, in order


SCRIPT = """
import json, sys
from bluesky import RunEngine
from bluesky.utils import FailedStatus, RunEngineInterrupted
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope

RE = RunEngine(call_returns_result=True)  # default context managers: Ctrl-C handling
scope = sim_microscope(data_dir=sys.argv[1], image_shape=(128, 128))
ts, seqs = [], []

def cb(name, doc):
    if name == "event" and "visit-kind" in doc["data"]:
        ts.append(doc["data"]["visit-t"])
        seqs.append(doc["seq_num"])
        print("EVENT", len(ts), flush=True)

RE.subscribe(cb)
phase = Phase("b", interval=0, n_frames=60, channels=[Channel("miRFP", 20)])
try:
    result = RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=None))
except RunEngineInterrupted:
    print("PAUSED", RE.state, int(scope.core.isSequenceRunning()), flush=True)
    result = RE.resume()
feed = scope.camera._acquire.feed
print("RESULT", json.dumps({"status": result.exit_status, "ts": ts, "seqs": seqs,
                            "starts": feed.starts}), flush=True)
"""


def test_real_ctrl_c_in_a_burst_pauses_and_resume_finishes(start_script):
    proc = start_script(SCRIPT)
    lines, sent = [], False
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("EVENT 5") and not sent:
            os.kill(proc.pid, signal.SIGINT)
            sent = True
    proc.wait(timeout=120)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, (stderr[-3000:], lines[-2:])  # did it end before exiting?
    assert [ln for ln in lines if ln.startswith("PAUSED")] == ["PAUSED paused 0"]
    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT")).split(" ", 1)[1])
    assert result["status"] == "success"
    assert result["ts"] == list(range(60))
    assert result["seqs"] == list(range(1, 61))
    assert result["starts"] in (1, 2)  # restarted after the pause unless it had finished
