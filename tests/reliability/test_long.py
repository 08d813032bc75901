"""Long reliability checks, outside the default suite: ``uv run pytest -m long tests/reliability``.

A storm of real Ctrl-C (SIGINT) on a running experiment, and memory over thousands of visits.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

pytestmark = pytest.mark.long

STORM = """
import json, sys
from bluesky import RunEngine
from bluesky.utils import RunEngineInterrupted
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope

RE = RunEngine(call_returns_result=True)  # default context managers: Ctrl-C handling
scope = sim_microscope(data_dir=sys.argv[1], image_shape=(128, 128), dmd_calibrated=True)
frames, seqs, dark = [], [], []

def cb(name, doc):
    if name == "event" and "visit-kind" in doc["data"]:
        d = doc["data"]
        frames.append([d["visit-t"], d["visit-p"], d["visit-kind"], d["visit-c"]])
        seqs.append(doc["seq_num"])
        print("EVENT", len(frames), flush=True)

RE.subscribe(cb)
phase = Phase("s", interval=0.1, n_frames=40, channels=[Channel("miRFP", 5)],
              stim_channels=[Channel("Cyan", 10, 10)], stim_frames=range(0, 40, 3))
try:
    result = RE(optogenetic_plan([(0, 0), (400, 0)], [phase], microscope=scope))
except RunEngineInterrupted:
    while True:
        dark.append(int(scope.core.getSLMImage().max()) == 0)
        print("PAUSED", flush=True)
        try:
            result = RE.resume()
            break
        except RunEngineInterrupted:
            continue
print("RESULT", json.dumps({"status": result.exit_status, "frames": frames, "seqs": seqs,
                            "dark": dark}), flush=True)
"""


def test_a_storm_of_20_ctrl_c_loses_and_repeats_nothing(start_script):
    proc = start_script(STORM)
    sent, lines = 0, []
    for line in proc.stdout:
        lines.append(line.strip())
        # a Ctrl-C after every few frames and after every pause: 20 in all
        paused = line.startswith("PAUSED")
        every_4th = line.startswith("EVENT") and int(line.split()[1]) % 4 == 0
        if sent < 20 and (paused or every_4th):
            threading.Event().wait(0.12)  # > 0.1 s apart: separate presses, not a bounce
            os.kill(proc.pid, signal.SIGINT)
            sent += 1
    proc.wait(timeout=300)
    stderr = proc.stderr.read()
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(next(ln for ln in lines if ln.startswith("RESULT")).split(" ", 1)[1])
    assert result["status"] == "success"
    expected = sorted(
        [[t, p, "image", 0] for t in range(40) for p in range(2)]
        + [[t, p, "stim", 0] for t in range(0, 40, 3) for p in range(2)]
    )
    assert sorted(result["frames"]) == expected  # every frame once
    assert result["seqs"] == list(range(1, len(expected) + 1))
    assert sent == 20 and result["dark"] and all(result["dark"])  # DMD dark at every pause


def test_memory_stays_flat_over_2000_visits(RE, tmp_path):
    import resource

    from faro_bluesky.analysis import Analyzer
    from faro_bluesky.plans import Channel, Phase, optogenetic_plan
    from faro_bluesky.sim import sim_microscope
    from faro_bluesky.storage import Catalog

    catalog = Catalog.local(tmp_path / "catalog")
    sub = catalog.subscribe(RE)
    scope = sim_microscope(seed=0, data_dir=catalog.data_dir, image_shape=(64, 64))
    rss: dict[int, float] = {}

    def cb(name, doc):
        if name == "event" and doc["data"].get("visit-kind") == "image":
            n = doc["seq_num"]
            if n in (500, 2000):
                rss[n] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB

    RE.subscribe(cb)
    with Analyzer() as analyzer:
        phase = Phase("m", interval=0, n_frames=2000, channels=[Channel("miRFP", 1)])
        RE(optogenetic_plan([(0, 0)], [phase], microscope=scope, analyzer=analyzer))
    sub.unsubscribe()
    catalog.close()
    assert set(rss) == {500, 2000}
    assert rss[2000] - rss[500] < 60, rss  # bounded queues and caches: no growth per visit
