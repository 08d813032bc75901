"""A closed-loop run (live analyzer) in the catalog: its labels and tracks read back, the
store stays valid OME-Zarr, and replaying the stored run into a fresh analyzer (from the raw
log, and from tiled's documents) gives the live tracks."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import yaozarrs
from bluesky import RunEngine
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from faro_bluesky.analysis import Analyzer, read_tracks
from faro_bluesky.analysis.components import ErkKtrFeatures, FractionOfCells, OtsuSegmenter
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog, replay


def _analyzer(**kw):
    return Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=FractionOfCells(0.5, seed=1),
        **kw,
    )


def _comparable(tracks: pd.DataFrame) -> pd.DataFrame:
    return tracks.sort_values(["fov", "t", "particle"], ignore_index=True)


@pytest.fixture(scope="module")
def closed_loop(tmp_path_factory):
    catalog = Catalog.local(tmp_path_factory.mktemp("closed_loop"))
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(
        seed=3, data_dir=catalog.data_dir, image_shape=(256, 256), dmd_calibrated=True
    )
    subscription = catalog.subscribe(RE)
    analyzer = _analyzer()
    phase = Phase(
        "stim",
        interval=0.1,
        n_frames=4,
        channels=[Channel("miRFP", 10), Channel("ERKKTR", 10)],
        stim_channels=[Channel("Cyan", 50, power=50)],
        stim_frames=(1, 2),
    )
    RE(optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=scope, analyzer=analyzer))
    live = analyzer.tracks()
    analyzer.close()
    scope.close()  # no camera cache left: replays read the zarr store
    yield catalog, live
    subscription.unsubscribe()
    catalog.close()


def test_labels_and_tracks_of_a_closed_loop_run_read_back(closed_loop):
    catalog, live = closed_loop
    run = catalog[-1]
    assert len(live) > 10
    pd.testing.assert_frame_equal(_comparable(run.tracks()), _comparable(live))
    assert "stim" in run.tracks()["phase"].unique()
    names = run.label_names
    assert names
    labels = run.labels(names[0], fov=1).compute()
    assert labels.shape == (4, 256, 256) and labels.any()
    yaozarrs.validate_zarr_store(str(run.store_path))
    nodes = list(Reader(parse_url(str(run.store_path)))())
    assert {n.zarr.path.rstrip("/").split("/")[-1] for n in nodes[1:]} >= set(names)


@pytest.mark.parametrize("source", ["log", "tiled"])
def test_replaying_the_stored_run_into_a_fresh_analyzer_gives_the_live_tracks(
    closed_loop, source, tmp_path
):
    catalog, live = closed_loop
    run = catalog[-1]
    fresh = _analyzer(output=tmp_path / "out")
    docs = run.tiled if source == "tiled" else run.log_path
    replay(docs, fresh)
    assert fresh.wait_idle(60)
    fresh.close()
    assert not fresh.errors
    pd.testing.assert_frame_equal(_comparable(read_tracks(tmp_path / "out")), _comparable(live))


def test_lag_and_latency_come_from_the_documents_alone(closed_loop):
    import numpy as np

    from faro_bluesky.storage import events_table, run_timing

    catalog, _ = closed_loop
    run = catalog[-1]
    timing = run.timing()
    lag = timing.lag
    assert len(lag) == 8  # 4 timepoints x 2 FOVs
    assert (lag["lag_ms"] >= 0).all()  # no exposure starts before its visit is due
    lat = timing.latency
    assert list(zip(lat["t"], lat["p"], strict=True)) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert (lat["source_t"] == lat["t"]).all()  # current mode: this frame's own mask
    chain = ["exposure_end", "pixels_ready", "labels_ready", "mask_ready", "dmd_shown"]
    for before, after in itertools.pairwise([*chain, "stim_start"]):
        assert (lat[after] >= lat[before]).all(), (before, after)
    stages = lat[["pixels", "labels", "mask", "dmd", "stim"]].sum(axis=1)
    np.testing.assert_allclose(stages, lat["total"])
    np.testing.assert_allclose(lat[["pixels", "labels", "mask"]].sum(axis=1), lat["pixels_to_mask"])
    # (a mask from the segmenter's plane may be ready before the last exposure ends: no
    # compute on the path then, all of it before)
    assert (lat["compute"] >= 0).all() and (lat["framework"] <= lat["total"]).all()
    summary = timing.summary()
    assert summary.loc["total", "n"] == 4 and summary.loc["lag", "n"] == 8

    # the raw log's documents (a replay) give the same tables as the catalog
    docs = list(run.documents(source="log"))
    names = {d["uid"]: d["name"] for n, d in docs if n == "descriptor"}
    events = {
        s: [d for n, d in docs if n == "event" and names[d["descriptor"]] == s]
        for s in ("primary", "mask")
    }
    again = run_timing(events_table(events["primary"]), events_table(events["mask"]))
    pd.testing.assert_frame_equal(again.latency, lat, check_dtype=False)
    pd.testing.assert_frame_equal(again.lag, lag, check_dtype=False)
