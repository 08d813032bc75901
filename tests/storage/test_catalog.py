"""A run on the simulated microscope lands in the embedded catalog and reads back whole."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zarr

from faro_bluesky.plans import Phase
from faro_bluesky.storage import FRAME_COLUMNS, Catalog


def as_json(doc):
    """What a document looks like after JSON (tuples become lists)."""
    return json.loads(json.dumps(doc))


def test_run_lands_in_the_catalog_with_its_documents(recorded):
    catalog, uid = recorded.catalog, recorded.uid
    assert uid in catalog
    run = catalog[-1]
    assert run.uid == uid
    assert catalog[uid].uid == uid
    assert catalog[uid[:8]].uid == uid  # a unique prefix is enough
    assert [r.uid for r in catalog] == catalog.uids() == [uid]
    assert len(catalog) == 1

    (live_start,) = [as_json(d) for n, d in recorded.live if n == "start"]
    (live_stop,) = [as_json(d) for n, d in recorded.live if n == "stop"]
    assert run.start == live_start
    assert run.stop == live_stop
    assert run.exit_status == "success"
    assert run.stop["num_events"] == {"primary": 20, "mask": 4}
    live_descriptors = {d["uid"]: d for n, d in recorded.live if n == "descriptor"}
    assert {d["uid"] for d in run.descriptors} == set(live_descriptors)
    for desc in run.descriptors:
        assert desc["data_keys"] == as_json(live_descriptors[desc["uid"]]["data_keys"])
    assert sorted(run.streams) == ["mask", "primary"]

    # the experiment comes back as objects, equal to what was run
    assert run.experiment == recorded.phases
    assert isinstance(run.experiment[0], Phase)
    assert run.start["phase_names"] == ["baseline", "stim"]
    assert run.start["sample"] == "HeLa-ERK"


def test_frames_table_describes_every_frame_in_acquisition_order(recorded):
    run = recorded.catalog[recorded.uid]
    frames = run.frames
    assert list(frames.columns) == FRAME_COLUMNS
    events = recorded.events()
    assert len(frames) == len(events) == 20
    expected = [
        (
            i,
            e["data"]["visit-t"],
            e["data"]["visit-p"],
            e["data"]["visit-kind"],
            e["data"]["visit-c"],
            e["data"]["channel-config"],
            e["data"]["visit-phase"],
            e["time"],
        )
        for i, e in enumerate(events)
    ]
    got = list(
        frames[["index", "t", "p", "kind", "c", "channel", "phase", "time"]].itertuples(
            index=False, name=None
        )
    )
    assert got == expected
    assert set(frames["kind"]) == {"image", "stim", "ref"}


def test_arrays_read_through_tiled_equal_the_zarr_on_disk(recorded):
    run = recorded.catalog[recorded.uid]
    store = run.store_path
    assert store.parent == recorded.catalog.data_dir
    on_disk = zarr.open_array(store / "camera", mode="r")[:]
    assert on_disk.shape == (20, 1, 128, 128)
    through_tiled = run.raw(via="tiled").compute()
    np.testing.assert_array_equal(through_tiled, on_disk)
    assert on_disk.std() > 0  # real frames, not zeros

    # per-FOV stacks follow the frames table
    frames = run.frames
    for fov in (0, 1):
        stack = run.images(fov).compute()  # (T, C, Y, X)
        ts = run.timepoints(fov)
        assert stack.shape == (len(ts), 2, 128, 128)
        for row, t in enumerate(ts):
            for c in range(2):
                sel = frames[
                    (frames.p == fov) & (frames.t == t) & (frames.kind == "image") & (frames.c == c)
                ]
                if sel.empty:  # the stim phase images one channel
                    assert not stack[row, c].any()
                else:
                    np.testing.assert_array_equal(stack[row, c], on_disk[sel["index"].item(), 0])
    stim = run.images(0, "stim", via="tiled").compute()
    assert stim.shape == (2, 1, 128, 128)  # stim frames 1 and 2 of the stim phase
    np.testing.assert_array_equal(run.timepoints(0, "stim"), [3, 4])  # t counts across phases


def test_search_by_phase_plan_sample_and_time(recorded):
    catalog = recorded.catalog
    start = catalog[-1].start["time"]
    assert catalog.search(phase="stim").uids() == [recorded.uid]
    assert catalog.search(phase="baseline", plan="optogenetic_plan").uids() == [recorded.uid]
    assert len(catalog.search(phase="recovery")) == 0
    assert len(catalog.search(sample="HeLa-ERK")) == 1
    assert len(catalog.search(sample="other")) == 0
    assert len(catalog.search(since=start - 1, until=start + 1)) == 1
    day = time.strftime("%Y-%m-%d", time.localtime(start))
    assert len(catalog.search(since=day)) == 1
    assert len(catalog.search(until=day)) == 0
    assert len(catalog.search(stim_mode="current")) == 1  # any start field
    assert catalog.search(phase="stim")[-1].uid == recorded.uid
    with pytest.raises(ValueError, match="since="):
        catalog.search(since="last tuesday")


def test_bad_input_says_what_to_fix(recorded, tmp_path):
    catalog = recorded.catalog
    run = catalog[-1]
    with pytest.raises(KeyError, match="no run"):
        catalog["not-a-uid"]
    with pytest.raises(IndexError):
        catalog[5]
    with pytest.raises(ValueError, match="fov=7"):
        run.images(7)
    with pytest.raises(ValueError, match="kind="):
        run.images(0, "flat")
    with pytest.raises(ValueError, match="via="):
        run.raw("ftp")
    with pytest.raises(ValueError, match="no label images"):
        run.labels("nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        Catalog.local(tmp_path / "file")
    with pytest.raises(ValueError, match="tables="):
        Catalog.local(catalog.path, tables="mongo")
    with pytest.raises(ValueError, match="already uses sqlite"):
        Catalog.local(catalog.path, tables="duckdb")
    with pytest.raises(ValueError, match="http"):
        Catalog.from_uri("localhost:8000")
