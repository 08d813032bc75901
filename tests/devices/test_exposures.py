"""Work held for the camera's next exposure goes when it starts or when the plan asks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest
from bluesky.plans import count

from faro_bluesky.analysis._jobs import segment_early
from faro_bluesky.analysis.components import OtsuSegmenter
from faro_bluesky.devices import EXPOSURES, ExposureGate


def test_a_waiter_goes_when_the_gate_opens_and_not_before():
    gate = ExposureGate()
    opened = []
    remove = gate.subscribe(lambda: opened.append(gate.generation))
    seen = gate.generation
    assert not gate.wait_past(seen, timeout=0.01)  # nothing opened it: its timeout ends it
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(gate.wait_past, seen, 60)
        gate.open()
        assert waiter.result(timeout=60) is True
    assert opened == [seen + 1]
    remove()
    gate.open()
    assert opened == [seen + 1]  # removed: not told any more


def test_the_camera_opens_the_gate_as_each_exposure_starts(RE, scope):
    before = EXPOSURES.generation
    RE(count([scope.camera], num=3))
    assert EXPOSURES.generation - before >= 3


def test_a_readout_segmentation_waits_for_the_next_exposure(monkeypatch):
    """Decision 0067: it does not compete with the plan setting up that exposure."""
    monkeypatch.setattr("faro_bluesky.analysis._jobs.READOUT_HOLD_S", 60.0)
    plane = np.zeros((64, 64), np.uint16)
    plane[20:40, 20:40] = 1000
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(segment_early, OtsuSegmenter(), plane, EXPOSURES.generation)
        with pytest.raises(FutureTimeout):
            job.result(timeout=0.2)  # held (a bound on a wait that must not end by itself)
        EXPOSURES.open()
        labels = job.result(timeout=60).labels
    assert labels.max() == 1
