"""Pause, resume, stop, abort and halt through the RunEngine: no frame twice, none lost."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import zarr
from bluesky.utils import RunEngineInterrupted

from faro_bluesky.devices import frames_written
from faro_bluesky.plans import Channel, Phase, optogenetic_plan

FOVS = [(0.0, 0.0), (400.0, 0.0)]
PHASE = Phase(
    "stim",
    interval=0.15,
    n_frames=4,
    channels=[Channel("miRFP", 5), Channel("ERKKTR", 5)],
    stim_channels=[Channel("Cyan", 10, 10)],
    stim_frames=(1, 3),
)


def expected_frames():
    out = []
    for t in range(4):
        for p in range(2):
            out += [(t, p, "image", 0), (t, p, "image", 1)]
            if t in (1, 3):
                out.append((t, p, "stim", 0))
    return collections.Counter(out)


def primary(docs):
    uids = {d["uid"] for d in docs.of("descriptor") if d["name"] == "primary"}
    return [e for e in docs.of("event") if e["descriptor"] in uids]


def check_no_duplicates(docs):
    events = primary(docs)
    assert [e["seq_num"] for e in events] == list(range(1, len(events) + 1))
    datums = [d for d in docs.of("stream_datum")]
    ranges = [(d["indices"]["start"], d["indices"]["stop"]) for d in datums]
    assert ranges == [(i, i + 1) for i in range(len(ranges))]
    assert len(ranges) == len(events)
    (resource,) = docs.of("stream_resource")
    path = resource["uri"].removeprefix("file://localhost")
    assert frames_written(path) == len(events)  # every frame on disk, once
    # a halted run never unstages its camera: its array may run ahead of the frames (a
    # catalog's recorder trims it before the stop is stored); any other end trims it
    assert zarr.open_array(path, mode="r").shape[0] >= len(events)
    return events


def pause_after(RE, n_events, defer):
    """Subscribe a callback that asks for a pause from another thread after n frames."""
    state = {"n": 0, "fired": False, "primary": set()}

    def cb(name, doc):
        if name == "descriptor" and doc["name"] == "primary":
            state["primary"].add(doc["uid"])
        if name == "event" and doc["descriptor"] in state["primary"]:
            state["n"] += 1
            if state["n"] >= n_events and not state["fired"]:
                state["fired"] = True
                threading.Thread(target=RE.request_pause, kwargs={"defer": defer}).start()

    RE.subscribe(cb)
    return state


def run_resuming(RE, plan, scope):
    """Run ``plan``; at every pause check the DMD is dark, then resume. Return pause count."""
    pauses = 0
    try:
        result = RE(plan)
    except RunEngineInterrupted:
        while True:
            pauses += 1
            assert RE.state == "paused"
            assert scope.core.getSLMImage().max() == 0  # DMD blank while paused
            assert not scope.sim.world.optics.shutter_open  # no stim light
            try:
                result = RE.resume()
                break
            except RunEngineInterrupted:
                continue
    return result, pauses


@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "immediate"])
@pytest.mark.parametrize("after", [1, 3, 6, 11, 15])
def test_pause_resume_keeps_every_frame_once(RE, docs, scope, defer, after):
    pause_after(RE, after, defer)
    result, pauses = run_resuming(RE, optogenetic_plan(FOVS, [PHASE], microscope=scope), scope)
    assert result.exit_status == "success"
    assert pauses >= 1
    events = check_no_duplicates(docs)
    got = collections.Counter(
        (e["data"]["visit-t"], e["data"]["visit-p"], e["data"]["visit-kind"], e["data"]["visit-c"])
        for e in events
    )
    assert got == expected_frames()
    assert len(docs.of("stop")) == 1


def test_shift_keeps_intervals_true_and_catch_up_keeps_the_clock(RE, docs, scope):
    phase = Phase("p", interval=0.3, n_frames=3, channels=[Channel("miRFP", 5)])
    for mode in ("shift", "catch_up"):
        docs.docs.clear()
        state = pause_after(RE, 1, True)
        plan = optogenetic_plan(FOVS[:1], [phase], microscope=scope, on_resume=mode)
        try:
            RE(plan)
        except RunEngineInterrupted:
            threading.Event().wait(0.8)  # stay paused a known while (the thing under test)
            RE.resume()
        times = [e["time"] for e in primary(docs)]
        scheduled = np.diff([e["data"]["visit-scheduled"] for e in primary(docs)])
        gaps = np.diff(times)
        assert state["fired"] and len(times) == 3
        paused = int(np.argmax(gaps))  # the deferred pause lands before visit 1 or visit 2
        assert gaps[paused] > 0.8  # the pause really lasted
        others = [i for i in range(2) if i != paused]
        if mode == "shift":
            assert scheduled[paused] > 0.3 + 0.7  # the rest of the schedule moved by the pause
            assert all(scheduled[i] == pytest.approx(0.3, abs=0.02) for i in others)
        else:
            assert scheduled == pytest.approx([0.3, 0.3], abs=0.02)  # the clock is kept
            assert all(gaps[i] < 0.3 for i in others if i > paused)  # late visits at once


@pytest.mark.parametrize("action", ["stop", "abort", "halt"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stop_abort_halt_at_random_points(RE, docs, calibrated_scope, action, seed):
    scope = calibrated_scope
    after = random.Random(seed).randint(1, 14)
    pause_after(RE, after, defer=bool(seed))
    with pytest.raises(RunEngineInterrupted):
        RE(optogenetic_plan(FOVS, [PHASE], microscope=scope))
    result = getattr(RE, action)()
    (stop,) = docs.of("stop")
    expected = {"stop": "success", "abort": "abort", "halt": "abort"}[action]
    assert stop["exit_status"] == expected
    assert result.exit_status == expected
    events = check_no_duplicates(docs)
    assert len(events) >= after
    (resource,) = docs.of("stream_resource")
    array = zarr.open_array(resource["uri"].removeprefix("file://localhost"), mode="r")
    assert array.shape[0] == len(events) or action == "halt"
    frames = array[: len(events)]
    assert (frames.reshape(len(frames), -1).max(axis=1) > 0).all()  # every frame has pixels
    if action != "halt":
        assert scope.core.getSLMImage().max() == 0


SCRIPT = """
import json, sys
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope

RE = RunEngine(call_returns_result=True)  # default context managers: Ctrl-C handling
scope = sim_microscope(data_dir=sys.argv[1], image_shape=(128, 128))
frames, seqs, n = [], [], [0]

def cb(name, doc):
    if name == "event" and "visit-kind" in doc["data"]:
        d = doc["data"]
        frames.append([d["visit-t"], d["visit-p"], d["visit-kind"], d["visit-c"]])
        seqs.append(doc["seq_num"])
        n[0] += 1
        print("EVENT", n[0], flush=True)

RE.subscribe(cb)
phase = Phase("s", interval=0.25, n_frames=4, channels=[Channel("miRFP", 5)],
              stim_channels=[Channel("Cyan", 10, 10)], stim_frames=(1, 2))
try:
    result = RE(optogenetic_plan([(0, 0), (400, 0)], [phase], microscope=scope))
except RunEngineInterrupted:
    print("PAUSED", RE.state, int(scope.core.getSLMImage().max()), flush=True)
    result = RE.resume()
print("RESULT", json.dumps({"status": result.exit_status, "frames": frames, "seqs": seqs}),
      flush=True)
"""


@pytest.mark.parametrize("ctrl_c", [1, 2], ids=["once", "twice"])
def test_real_sigint_pauses_at_a_visit_boundary_and_resume_finishes(tmp_path, ctrl_c, start_script):
    proc = start_script(SCRIPT)
    lines = []
    sent = False
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("EVENT 3") and not sent:
            os.kill(proc.pid, signal.SIGINT)
            if ctrl_c == 2:  # a second Ctrl-C, as a user types it: > 0.1 s later, a hard pause
                threading.Event().wait(0.15)  # inside the 0.5 s a deferred pause waits
                os.kill(proc.pid, signal.SIGINT)
            sent = True
    proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr[-3000:]
    said = "\n".join(lines) + stderr
    assert ("hard pause" in said) == (ctrl_c == 2), said[-2000:]
    paused = [ln for ln in lines if ln.startswith("PAUSED")]
    assert paused == ["PAUSED paused 0"]  # paused, DMD blank
    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT")).split(" ", 1)[1])
    assert result["status"] == "success"
    expected = sorted(
        [[t, p, "image", 0] for t in range(4) for p in range(2)]
        + [[t, p, "stim", 0] for t in (1, 2) for p in range(2)]
    )
    assert sorted(result["frames"]) == expected
    assert result["seqs"] == list(range(1, len(expected) + 1))
    assert Path(tmp_path / "data").exists()
