"""The simulated sample: deterministic, drifting cells whose activity follows the light."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from faro_bluesky.sim import SampleParams, SimSample
from faro_bluesky.sim._render import FieldRenderer


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def renderer(seed=0, **params):
    clock = Clock()
    sample = SimSample(seed, SampleParams(**params), clock=clock)
    return FieldRenderer(sample, (256, 256), 0.65), clock


def test_same_seed_same_cells_other_seed_other_cells():
    a, _ = renderer(3)
    b, _ = renderer(3)
    c, _ = renderer(4)
    ga, gb, gc = (r.ground_truth((100.0, -50.0), 0.0) for r in (a, b, c))
    np.testing.assert_array_equal(ga.ids, gb.ids)
    np.testing.assert_array_equal(ga.nuclei, gb.nuclei)
    assert not np.array_equal(ga.nuclei > 0, gc.nuclei > 0)


def test_fovs_show_different_cells():
    r, _ = renderer()
    g1 = r.ground_truth((0.0, 0.0), 0.0)
    g2 = r.ground_truth((400.0, 0.0), 0.0)
    assert len(g1.ids) > 5 and len(g2.ids) > 5
    assert not set(g1.ids) & set(g2.ids)


def test_cells_drift_slowly():
    r, _ = renderer()
    g0 = r.ground_truth((0.0, 0.0), 0.0)
    g1 = r.ground_truth((0.0, 0.0), 60.0)
    common = np.intersect1d(g0.ids, g1.ids)
    d = np.linalg.norm(
        g0.xy_px[np.isin(g0.ids, common)] - g1.xy_px[np.isin(g1.ids, common)], axis=1
    )
    assert d.mean() > 0.5  # cells move...
    assert d.max() < 20  # ...but slowly (60 s): tracking is possible


def test_activity_rises_over_seconds_and_decays_over_tens_of_seconds():
    r, clock = renderer()
    sample = r.sample
    cid = np.array([12345])
    sample.deliver_light(cid, np.array([1.0]), power_fraction=0.1, duration_s=0.1)
    trace = []
    for t in (0.5, 1, 2, 4, 8, 15, 30, 60, 120):
        clock.t = t
        trace.append(sample.activity(cid)[0])
    peak = int(np.argmax(trace))
    assert trace[0] < trace[peak] * 0.5  # not instantaneous
    assert 2 <= [0.5, 1, 2, 4, 8, 15, 30, 60, 120][peak] <= 15  # peaks after seconds
    assert trace[-2] < trace[peak] * 0.5  # mostly gone after a minute
    assert trace[-1] < trace[-2]
    assert sample.activity(np.array([999]))[0] == 0.0  # other cells untouched


def test_time_scale_speeds_the_response():
    slow, c1 = renderer()
    fast, c2 = renderer(time_scale=10.0)
    for r in (slow, fast):
        r.sample.deliver_light(np.array([1]), np.array([1.0]), 0.1, 0.1)
    c1.t = c2.t = 0.5
    assert fast.sample.activity([1])[0] > 2 * slow.sample.activity([1])[0]


@pytest.mark.parametrize("activity", [0.0, 0.8])
def test_erk_ktr_image_encodes_activity_as_cytoplasm_nucleus_ratio(activity):
    r, _ = renderer()
    cells = r.cells((0.0, 0.0), 0.0, margin_px=0)
    cells = dataclasses.replace(cells, activity=np.full(len(cells.ids), activity))
    stamps = r.stamps(cells, (0.0, 0.0))
    img = r.render("ERKKTR", cells, stamps) - 1.0
    ratios = []
    for s in stamps:
        patch = img[s.rows, s.cols]
        nuc = patch[s.nucleus > 0.99].mean()
        cyto = patch[(s.cell > 0.99) & (s.nucleus < 0.01)].mean()
        ratios.append(cyto / nuc)
    assert np.median(ratios) == pytest.approx(r.sample.erk_ratio(activity), rel=0.05)
