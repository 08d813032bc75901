"""Closed-loop latency from the documents alone, stage by stage, live and stored.

The analyzer hands each mask over with its `MaskTimes` (pixels in hand, labels ready, the
components' compute); the plan's mask facet records them in stream ``mask``, so a stored
run splits exposure end -> stim exposure into its stages without the analyzer at hand
(issue "Closed loop in 30 ms", points 4 and 6).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.schema import MaskField, MaskFields, Stream
from faro_bluesky.storage import LATENCY_STAGES, Catalog, events_table, run_timing

FOVS = [(0.0, 0.0), (300.0, 0.0)]
CHAIN = ["exposure_end", "pixels_ready", "labels_ready", "mask_ready", "dmd_shown", "stim_start"]
TIMES = (MaskField.PIXELS_AT, MaskField.LABELS_AT, MaskField.COMPUTE_MS)


def _phase(channels: list[Channel]) -> Phase:
    return Phase(
        "stim",
        interval=0.1,
        n_frames=3,
        channels=channels,
        stim_channels=[Channel("Cyan", 20, power=50)],
        stim_frames=(1, 2),
    )


def _spans(run):
    """Each stored mask event's segmentation span (``mask-segment_*``)."""
    table = run.tiled[Stream.MASK].base["internal"].read()
    return table[[MaskField.SEGMENT_START, MaskField.SEGMENT_END]].to_numpy(float)


def _live_timing(docs):
    """`run_timing` of the documents as the RunEngine emitted them."""
    streams = {d["uid"]: d["name"] for d in docs.of("descriptor")}
    events = {
        s: [e for e in docs.of("event") if streams[e["descriptor"]] == s]
        for s in (Stream.PRIMARY, Stream.MASK)
    }
    return run_timing(events_table(events[Stream.PRIMARY]), events_table(events[Stream.MASK]))


@pytest.fixture
def catalog(RE, tmp_path):
    """A catalog recording every run of ``RE``; its ``data`` directory is the scope's."""
    catalog = Catalog.local(tmp_path)
    subscription = catalog.subscribe(RE)
    yield catalog
    subscription.unsubscribe()
    catalog.close()


@pytest.mark.parametrize(
    "channels",
    [
        # segmentation starts with the first plane, during the second exposure
        [Channel("miRFP", 10), Channel("ERKKTR", 10)],
        # one plane: segmented in the stack's own job, after its pixels are in
        [Channel("miRFP", 10)],
    ],
    ids=["early-segmentation", "one-job"],
)
def test_every_stimulation_has_its_stages_in_order_live_and_stored(
    RE, calibrated_scope, docs, catalog, channels
):
    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"), stimulator=FractionOfCells(0.5, seed=1)
    )
    try:
        plan = optogenetic_plan(
            FOVS, [_phase(channels)], microscope=calibrated_scope, analyzer=analyzer
        )
        assert RE(plan).exit_status == "success"
    finally:
        analyzer.close()
    assert not analyzer.errors
    run = catalog[-1]

    # the stored mask events carry the analyzer's times, declared with units
    (descriptor,) = [d for d in run.descriptors if d["name"] == Stream.MASK]
    keys = descriptor["data_keys"]
    assert [keys[f].get("units") for f in TIMES] == ["s", "s", "ms"]
    stored = [
        MaskFields.from_event(d["data"])
        for name, d in run.documents(source="tiled")
        if name == "event" and d["descriptor"] == descriptor["uid"]
    ]
    assert len(stored) == 4 and not any(m.missed for m in stored)
    for m in stored:
        assert m.pixels_at <= m.labels_at and m.compute_ms > 0

    # exposure end <= pixels <= labels <= mask <= DMD shown <= stim exposure, every time
    timing = run.timing()
    lat = timing.latency
    assert list(zip(lat["t"], lat["p"], strict=True)) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert lat[CHAIN].notna().all().all()
    for before, after in itertools.pairwise(CHAIN):
        assert (lat[after] >= lat[before]).all(), (before, after)
    stages = ["pixels", "labels", "mask", "dmd", "stim"]
    np.testing.assert_allclose(lat[stages].sum(axis=1), lat["total"])
    np.testing.assert_allclose(lat["total"] - lat["compute"], lat["framework"])
    # the components computed within exposure end -> mask, one after the other; a mask
    # from the segmenter's plane (two channels) may be ready before the last exposure ends:
    # then only the compute after that end counts, and the stages before it took no time
    assert ((lat["compute"] >= 0) & (lat["compute"] <= lat["pixels_to_mask"])).all()
    # (which path a mask took depends on timing: the analysis tests pin each one down)
    early = np.array([not np.isnan(np.asarray(s, float)).all() for s in _spans(run)])
    assert not early.any() or len(channels) == 2  # one plane: the stack is the plane
    assert (lat["compute"][~early] > 0).all()
    summary = timing.summary()
    assert list(summary.index) == ["lag", *LATENCY_STAGES]
    assert (summary["n"] == [6, *[4] * len(LATENCY_STAGES)]).all()

    # the stored run gives exactly the tables of the live documents (a replay's equal)
    live = _live_timing(docs)
    pd.testing.assert_frame_equal(lat, live.latency, check_dtype=False, check_exact=True)
    pd.testing.assert_frame_equal(timing.lag, live.lag, check_dtype=False, check_exact=True)


def test_a_mask_source_without_times_still_gives_the_plans_stages(RE, calibrated_scope, docs):
    plan = optogenetic_plan(FOVS, [_phase([Channel("miRFP", 10)])], microscope=calibrated_scope)
    assert RE(plan).exit_status == "success"  # the plan's fixed whole-field mask: no times
    masks = [e for e in docs.of("event") if MaskField.MISSED in e["data"]]
    assert len(masks) == 4
    assert all(math.isnan(e["data"][f]) for e in masks for f in TIMES)
    lat = _live_timing(docs).latency
    assert lat[["pixels", "labels", "mask", "compute", "framework"]].isna().all().all()
    assert lat[["pixels_to_mask", "dmd", "stim", "total"]].notna().all().all()
    # known before the visit: ready at the exposure's end, the pattern shown after it
    assert (lat["pixels_to_mask"] == 0).all() and (lat["dmd"] > 0).all()
    assert np.allclose(lat["dmd"] + lat["stim"], lat["total"])


def test_a_mask_event_recorded_before_the_times_parses_with_nan():
    old = {"mask-mask": [[1]], "mask-fov": 0, "mask-t": 1, "mask-missed": False}
    mask = MaskFields.from_event({**old, MaskField.WAIT_MS: 3.0})
    assert (mask.fov, mask.t, mask.wait_ms) == (0, 1, 3.0)
    assert math.isnan(mask.pixels_at) and math.isnan(mask.labels_at)
    assert math.isnan(mask.compute_ms)
