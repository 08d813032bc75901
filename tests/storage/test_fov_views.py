"""Each run's images as standard OME-Zarr per FOV (decision 0057): a closed-loop run with two
imaging channels, stimulation at some timepoints and the analyzer's labels, recorded into an
embedded catalog, gets ``<store>/fovs/<p>`` images whose chunk files are the raw ones."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaozarrs
import zarr
from bluesky import RunEngine
from ome_types import from_xml, validate_xml
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import CenterCircle, ErkKtrFeatures, OtsuSegmenter
from faro_bluesky.devices import link_fov_labels
from faro_bluesky.devices._chunk_links import sync_chunk
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.sim import sim_microscope
from faro_bluesky.storage import Catalog
from faro_bluesky.storage._fov_views import fov_views

IMAGING = [Channel("miRFP", 5), Channel("ERKKTR", 5)]
PHASES = [
    Phase("baseline", interval=0.05, n_frames=2, channels=IMAGING),
    Phase(
        "stim",
        interval=0.1,
        n_frames=3,
        channels=IMAGING,
        stim_channels=[Channel("Cyan", 10, power=50)],
        stim_frames=(1,),
    ),
]
CHANNELS = ["miRFP", "ERKKTR", "Cyan (stim)"]
T = 5  # 2 baseline + 3 stim timepoints


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    catalog = Catalog.local(tmp_path_factory.mktemp("fov_views"))
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(
        seed=4, data_dir=catalog.data_dir, image_shape=(128, 128), dmd_calibrated=True
    )
    subscription = catalog.subscribe(RE)
    analyzer = Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"),
        features=ErkKtrFeatures(channel="ERKKTR"),
        stimulator=CenterCircle(),
    )
    result = RE(optogenetic_plan([(0, 0), (300, 0)], PHASES, microscope=scope, analyzer=analyzer))
    assert result.exit_status == "success"
    analyzer.close()  # finishes the labels (and links them into built views)
    subscription.unsubscribe()  # waits for the recorder's view build: no user action
    scope.close()
    yield catalog[-1]
    catalog.close()


def _chunk(array_dir: Path, *coords: int) -> Path:
    return array_dir.joinpath("c", *map(str, coords))


def test_each_fov_is_an_ome_zarr_image_sharing_the_raw_chunk_files(recorded):
    run = recorded
    store = run.store_path
    fovs = store / "fovs"
    assert (fovs / "zarr.json").is_file()  # built by the catalog's recorder at the stop
    yaozarrs.validate_zarr_store(str(fovs))  # the collection, every FOV and its labels
    yaozarrs.validate_zarr_store(str(store))  # the raw image stays valid too
    raw = zarr.open_array(store / "camera", mode="r")
    frames = run.frames
    for p in (0, 1):
        view = zarr.open_array(fovs / str(p) / "0", mode="r")
        assert view.shape == (T, len(CHANNELS), 128, 128)
        assert view.metadata.codecs == raw.metadata.codecs
        sel = frames[frames["p"] == p]
        seen = set()
        for row in sel.itertuples():
            c = CHANNELS.index(row.channel if row.kind == "image" else f"{row.channel} (stim)")
            np.testing.assert_array_equal(view[row.t, c], raw[row.index, 0])
            shared = _chunk(fovs / str(p) / "0", row.t, c, 0, 0).stat()
            assert shared.st_ino == _chunk(store / "camera", row.index, 0, 0, 0).stat().st_ino
            seen.add((row.t, c))
        assert (3, 2) in seen and (2, 2) not in seen  # stim_frames=(1,): stim phase's t=1
        for t, c in np.ndindex(T, len(CHANNELS)):
            if (t, c) not in seen:  # never acquired: no chunk, fill value
                assert not _chunk(fovs / str(p) / "0", t, c, 0, 0).exists()
                assert not view[t, c].any()


def test_views_open_with_ome_zarr_with_time_axis_channels_and_labels(recorded):
    run = recorded
    nodes = list(Reader(parse_url(str(run.store_path / "fovs" / "1")))())
    image = nodes[0]
    assert [a["name"] for a in image.metadata["axes"]] == ["t", "c", "y", "x"]
    assert image.metadata["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    scale = image.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale[:2] == [0.1, 1.0]  # the interval of the phase with most timepoints
    assert image.metadata["channel_names"] == CHANNELS
    assert image.data[0].shape == (T, 3, 128, 128)
    found = {Path(str(n.zarr.path).rstrip("/")).name: n for n in nodes[1:]}
    assert set(run.label_names) <= set(found)

    attrs = zarr.open_group(run.store_path / "fovs" / "1", mode="r").attrs["faro"]
    phases = [(p["phase"], p["t_start"], p["t_stop"], p["interval_s"]) for p in attrs["phases"]]
    assert phases == [("baseline", 0, 2, 0.05), ("stim", 2, 5, 0.1)]
    times = attrs["time_s"]
    assert len(times) == T and all(b > a for a, b in itertools.pairwise(times))

    xml = (run.store_path / "fovs" / "OME" / "METADATA.ome.xml").read_text()
    validate_xml(xml)  # against the OME schema
    ome = from_xml(xml)
    assert [i.id for i in ome.images] == ["Image:0", "Image:1"]
    pixels = ome.images[1].pixels
    assert (pixels.size_t, pixels.size_c, pixels.time_increment) == (T, 3, 0.1)
    assert [c.name for c in pixels.channels] == CHANNELS
    assert len(pixels.planes) == 2 * T + 1 and all(p.delta_t is not None for p in pixels.planes)


def test_napari_opens_a_fov_and_the_whole_collection(recorded):
    npe2 = pytest.importorskip("npe2")
    npe2.PluginManager.instance().discover()  # what napari does at start-up
    fovs = recorded.store_path / "fovs"
    layers = npe2.read([str(fovs / "0")], stack=False, plugin_name="napari-ome-zarr")
    images = {m["name"]: (d, m) for d, m, kind in layers if kind == "image"}
    assert list(images) == [f"fov 0: {c}" for c in CHANNELS]
    data, meta = images["fov 0: ERKKTR"]
    assert data[0].shape == (T, 128, 128)
    assert meta["axis_labels"] == ("t", "y", "x") and meta["units"][0] == "second"
    assert meta["scale"][0] == 0.1
    labels = {m["name"]: d for d, m, kind in layers if kind == "labels"}
    assert set(labels) == set(recorded.label_names)
    assert labels["nuclei"][0].shape == (T, 128, 128)  # aligned with the images' t, y, x
    # the collection: every FOV (napari-ome-zarr lists them from the OME-XML)
    layers = npe2.read([str(fovs)], stack=False, plugin_name="napari-ome-zarr")
    names = [m["name"] for _, m, kind in layers if kind == "image"]
    assert names == [f"fov {p}: {c}" for p in (0, 1) for c in CHANNELS]


def test_label_views_are_the_analyzers_labels_aligned_on_t(recorded):
    run = recorded
    store = run.store_path
    names = run.label_names
    assert {"stim_mask", "particles"} <= set(names)
    for name in names:
        for p in (0, 1):
            view_dir = store / "fovs" / str(p) / "labels" / name / "0"
            view = zarr.open_array(view_dir, mode="r")
            assert view.shape == (T, 1, 128, 128)
            expected = run.labels(name, fov=p).compute()  # one plane per visit, max'ed
            np.testing.assert_array_equal(view[:, 0], expected)
    mask = zarr.open_array(store / "fovs" / "0" / "labels" / "stim_mask" / "0", mode="r")
    lit = [t for t in range(T) if mask[t, 0].any()]
    assert lit == [3]  # the stimulated timepoint, nowhere else
    frames = run.frames
    stim = frames[(frames.p == 0) & (frames.kind == "stim")]["index"].item()
    raw_chunk = _chunk(store / "labels" / "stim_mask" / "0", stim, 0, 0, 0)
    view_chunk = _chunk(store / "fovs" / "0" / "labels" / "stim_mask" / "0", 3, 0, 0, 0)
    assert raw_chunk.stat().st_ino == view_chunk.stat().st_ino


def test_fov_store_rebuilds_missing_views_and_relinks_rewritten_labels(recorded):
    run = recorded
    store = run.store_path
    before = (store / "fovs" / "1" / "0" / "c" / "0" / "0" / "0" / "0").stat().st_ino
    shutil.rmtree(store / "fovs")
    assert run.fov_store(1) == store / "fovs" / "1"  # built again, from the catalog's frames
    assert (store / "fovs" / "1" / "0" / "c" / "0" / "0" / "0" / "0").stat().st_ino == before
    yaozarrs.validate_zarr_store(str(run.fov_store()))
    with pytest.raises(ValueError, match="fov=7"):
        run.fov_store(7)

    # a label plane rewritten after the build (zarr writes a new file): relinked
    frames = run.frames
    index = frames[(frames.p == 1) & (frames.t == 0) & (frames.c == 0)]["index"].item()
    name = next(n for n in run.label_names if n not in ("stim_mask",))
    labels = zarr.open_array(store / "labels" / name / "0", mode="r+")
    labels[index, 0] = 7
    counts = link_fov_labels(store)
    assert counts["linked"] == 1
    view = zarr.open_array(store / "fovs" / "1" / "labels" / name / "0", mode="r")
    assert (view[0, 0] == 7).all()


def test_a_chunk_is_copied_where_hard_links_are_impossible(tmp_path):
    other = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else None
    if other is None or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system (hard links fail across devices)")
    try:
        source = tmp_path / "chunk"
        source.write_bytes(b"encoded frame")
        target = other / "c" / "0"
        assert sync_chunk(source, target) == "copied"
        assert target.read_bytes() == b"encoded frame"
        assert target.stat().st_ino != source.stat().st_ino
        assert sync_chunk(None, target) == "removed" and not target.exists()
    finally:
        shutil.rmtree(other)


def test_time_scale_is_the_longest_phase_and_unplanned_phases_are_measured():
    # t 0-1 "a" (planned, 5 s), t 2-4 "chosen" (a decision's phase: measured, 2 s apart)
    times = [0.0, 5.0, 30.0, 32.0, 34.0]
    phases = ["a", "a", "chosen", "chosen", "chosen"]
    frames = pd.DataFrame(
        {
            "index": range(5),
            "t": range(5),
            "p": 0,
            "kind": "image",
            "c": 0,
            "channel": "",
            "phase": phases,
            "time": [100.0 + s for s in times],
            "x": float("nan"),
            "y": float("nan"),
        }
    )
    start = {"time": 100.0, "experiment": [{"type": "phase", "name": "a", "interval": 5}]}
    (view,) = fov_views(frames, start, pixel_size_um=0.5)
    assert view.t_interval_s == 2.0  # "chosen" covers the most timepoints
    assert [(p["phase"], p["interval_s"]) for p in view.extra["phases"]] == [
        ("a", 5.0),
        ("chosen", 2.0),
    ]
    assert view.extra["time_s"] == times and view.stage_um is None
    assert [c.label for c in view.channels] == ["image 0"]  # a stock plan's frames


def test_closing_the_catalog_finishes_its_subscription_first(tmp_path):
    """A script that closes the catalog without unsubscribing still gets its views."""
    catalog = Catalog.local(tmp_path / "catalog")
    RE = RunEngine(context_managers=[], call_returns_result=True)
    scope = sim_microscope(seed=4, data_dir=catalog.data_dir, image_shape=(64, 64))
    subscription = catalog.subscribe(RE, process=False)  # (the thread writer starts faster)
    phase = Phase("p", interval=0.05, n_frames=2, channels=IMAGING)
    RE(optogenetic_plan([(0, 0), (300, 0)], [phase], microscope=scope))
    scope.close()
    catalog.close()
    assert not subscription.active  # unsubscribed: its writes and view builds are done
    reopened = Catalog.local(tmp_path / "catalog")
    try:
        store = reopened[-1].store_path
        assert (store / "fovs" / "zarr.json").is_file()
        assert sorted(p.name for p in (store / "fovs").iterdir() if p.is_dir()) == ["0", "1", "OME"]
    finally:
        reopened.close()
