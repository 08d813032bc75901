"""``interval=0`` phases: bursts through one camera sequence, pauses and Ctrl-C included."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest
import zarr
from bluesky.utils import RunEngineInterrupted

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
from bluesky.utils import RunEngineInterrupted
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
    assert proc.returncode == 0, stderr[-3000:]
    assert [ln for ln in lines if ln.startswith("PAUSED")] == ["PAUSED paused 0"]
    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT")).split(" ", 1)[1])
    assert result["status"] == "success"
    assert result["ts"] == list(range(60))
    assert result["seqs"] == list(range(1, 61))
    assert result["starts"] in (1, 2)  # restarted after the pause unless it had finished
