"""The run's zarr store is valid OME-Zarr, with the analyzer's labels and tracks readable."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import yaozarrs
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from faro_bluesky.storage import TRACK_COLUMNS, RunStore


def _write_labels(store, name, frames, n_raw):
    """Labels as decision 0016 lays them out (what the analyzer writes)."""
    root = zarr.open_group(store, mode="a", zarr_format=3)
    labels = root.require_group("labels")
    labels.attrs["ome"] = {"version": "0.5", "labels": [name]}
    group = labels.require_group(name)
    ome = dict(root.attrs["ome"])
    ome["multiscales"] = [dict(ome["multiscales"][0], name=name)]
    ome["multiscales"][0]["datasets"] = [dict(ome["multiscales"][0]["datasets"][0], path="0")]
    ome["image-label"] = {"source": {"image": "../../"}}
    group.attrs["ome"] = ome
    array = group.create_array(
        "0",
        shape=(n_raw, 1, 128, 128),
        chunks=(1, 1, 128, 128),
        dtype=np.uint32,
        fill_value=0,
        dimension_names=("t", "c", "y", "x"),
    )
    written = {}
    first_planes = frames[(frames.kind == "image") & (frames.c == 0)]
    for row in first_planes.itertuples():
        image = np.zeros((128, 128), np.uint32)
        image[10 + row.t : 20 + row.t, 30:40] = row.p + 1
        array[row.index, 0] = image
        written[(row.p, row.t)] = image
    return written


def _write_tracks(store, fov, parts):
    folder = store / "tracks" / f"fov_{fov:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    for k, table in enumerate(parts):
        table.to_parquet(folder / f"part-{k:06d}.parquet", index=False)


def _track_rows(fov, ts):
    return pd.DataFrame(
        {
            "particle": np.arange(len(ts), dtype=np.int64),
            "fov": fov,
            "t": np.asarray(ts, dtype=np.int64),
            "time": np.asarray(ts, dtype=float) * 0.05,
            "x": 35.0,
            "y": 15.0,
            "area": 100.0,
            "mean_intensity": 1.5,
            "stim": False,
            "phase": "baseline",
        }
    )


def _validate(store):
    yaozarrs.validate_zarr_store(str(store))  # raises on any structural/metadata error
    nodes = list(Reader(parse_url(str(store)))())
    return nodes


def test_raw_store_is_valid_ome_zarr_and_opens_with_ome_zarr(recorded):
    store = recorded.catalog[-1].store_path
    nodes = _validate(store)
    image = nodes[0]
    assert image.data[0].shape == (20, 1, 128, 128)
    axes = [a["name"] for a in image.metadata["axes"]]
    assert axes == ["t", "c", "y", "x"]
    np.testing.assert_array_equal(
        np.asarray(image.data[0][3]), zarr.open_array(store / "camera", mode="r")[3]
    )


def test_analyzer_labels_and_tracks_are_read_and_keep_the_store_valid(recorded):
    run = recorded.catalog[-1]
    store = run.store_path
    frames = run.frames
    written = _write_labels(store, "nuclei", frames, n_raw=len(frames))
    _write_tracks(store, 0, [_track_rows(0, [0, 1]), _track_rows(0, [2, 3])])
    _write_tracks(store, 1, [_track_rows(1, [0])])

    nodes = _validate(store)
    assert any("nuclei" in str(n.zarr) for n in nodes[1:])  # ome-zarr found the label image

    assert run.label_names == ["nuclei"]
    full = run.labels("nuclei").compute()
    assert full.shape == (20, 1, 128, 128) and full.dtype == np.uint32
    per_fov = run.labels("nuclei", fov=1).compute()  # (T, Y, X), one plane per visit
    ts = run.timepoints(1)
    assert per_fov.shape == (len(ts), 128, 128)
    for row, t in enumerate(ts):
        np.testing.assert_array_equal(per_fov[row], written[(1, t)])

    tracks = run.tracks(0)
    assert list(tracks["t"]) == [0, 1, 2, 3]  # the parts, in order
    assert set(TRACK_COLUMNS) <= set(tracks.columns)
    assert "mean_intensity" in tracks.columns
    everything = run.tracks()
    assert list(zip(everything.fov, everything.t, strict=True)) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 0),
    ]
    empty = run.tracks(5)
    assert empty.empty and list(empty.columns) == list(TRACK_COLUMNS)


def test_broken_tracks_part_is_skipped_not_fatal(tmp_path):
    store = RunStore(tmp_path / "x.zarr")
    _write_tracks(store.path, 0, [_track_rows(0, [0])])
    (store.path / "tracks" / "fov_0000" / "part-000001.parquet").write_bytes(b"PAR1trunc")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("faro_bluesky.storage._store")
    logger.addHandler(handler)
    try:
        tracks = store.tracks(0)
    finally:
        logger.removeHandler(handler)
    assert list(tracks["t"]) == [0]
    assert any("part-000001" in m for m in seen)
