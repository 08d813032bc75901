"""Stock bluesky plans drive our devices; documents validate; zarr holds the frames."""

from __future__ import annotations

from pathlib import Path

import bluesky.plans as bp
import numpy as np
import ophyd.sim
import pytest
import zarr
from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
from ophyd_async.sim import SimBlobDetector, SimMotor


def zarr_path(uri: str) -> Path:
    assert uri.startswith("file://localhost/")
    return Path(uri.removeprefix("file://localhost"))


def test_count_writes_every_frame_to_zarr(RE, docs, scope):
    scope.sim.world.record_frames()
    result = RE(bp.count([scope.camera], num=5))

    assert result.exit_status == "success"
    assert docs.names()[:3] == ["start", "descriptor", "stream_resource"]
    assert len(docs.of("event")) == 5
    datums = docs.of("stream_datum")
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [
        (i, i + 1) for i in range(5)
    ]
    (resource,) = docs.of("stream_resource")
    assert resource["mimetype"] == "application/x-zarr"
    key = docs.of("descriptor")[0]["data_keys"]["camera"]
    assert key["shape"] == [1, 256, 256]
    assert key["external"] == "STREAM:"

    array = zarr.open_array(zarr_path(resource["uri"]), mode="r")
    assert array.shape == (5, 1, 256, 256)
    assert array.dtype == np.uint16
    produced = scope.sim.world.recorded
    assert len(produced) == 5
    for i, frame in enumerate(produced):
        np.testing.assert_array_equal(array[i, 0], frame)
    # the in-memory handle holds the same pixels, addressed like the documents
    cached = scope.camera.frames.get(resource["uri"], 4)
    np.testing.assert_array_equal(cached.image, produced[4])


def test_zarr_store_is_an_ome_image(RE, docs, scope):
    RE(bp.count([scope.camera], num=2))
    (resource,) = docs.of("stream_resource")
    group = zarr.open_group(zarr_path(resource["uri"]).parent, mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "y", "x"]
    assert ms["datasets"][0]["path"] == "camera"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][-1] == pytest.approx(0.65)


def test_exposure_is_configuration(RE, docs, scope):
    RE(bp.count([scope.camera], num=1))
    config = docs.of("descriptor")[0]["configuration"]["camera"]
    assert config["data"]["camera-exposure"] == pytest.approx(10.0)


def test_scan_focus(RE, docs, scope):
    result = RE(bp.scan([scope.camera], scope.focus, -2, 2, 5))
    assert result.exit_status == "success"
    events = docs.of("event")
    assert [e["data"]["focus"] for e in events] == pytest.approx([-2, -1, 0, 1, 2])
    # defocus blurs: the in-focus frame has the most high-frequency detail
    array = zarr.open_array(zarr_path(docs.of("stream_resource")[0]["uri"]), mode="r")
    sharpness = [float(np.abs(np.diff(array[i, 0].astype(float), axis=1)).mean()) for i in range(5)]
    assert int(np.argmin(sharpness)) != 2  # noise aside, blur must not be best in focus
    assert sharpness[2] > sharpness[0]


def test_grid_scan_over_stage_shows_different_cells(RE, docs, scope):
    result = RE(bp.grid_scan([scope.camera], scope.stage.x, 0, 400, 2, scope.stage.y, 0, 400, 2))
    assert result.exit_status == "success"
    positions = np.array([(e["data"]["stage-x"], e["data"]["stage-y"]) for e in docs.of("event")])
    np.testing.assert_allclose(positions, [(0, 0), (0, 400), (400, 0), (400, 400)], atol=1e-6)
    array = zarr.open_array(zarr_path(docs.of("stream_resource")[0]["uri"]), mode="r")
    frames = [array[i, 0].astype(float) for i in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.corrcoef(frames[i].ravel(), frames[j].ravel())[0, 1] < 0.5


def test_mixed_with_ophyd_and_ophyd_async_sim_devices(RE, docs, scope, tmp_path):
    (tmp_path / "blob").mkdir()
    with init_devices():
        blob = SimBlobDetector(
            StaticPathProvider(UUIDFilenameProvider(), tmp_path / "blob"), name="blob"
        )
        motor = SimMotor(name="motor")
    result = RE(
        bp.scan(
            [scope.camera, blob, ophyd.sim.det, scope.channel],
            motor,
            0,
            1,
            scope.focus,
            0,
            2,
            3,
        )
    )
    assert result.exit_status == "success"
    keys = docs.of("descriptor")[0]["data_keys"]
    assert {"camera", "blob", "det", "motor", "focus", "channel-config"} <= set(keys)
    mimetypes = {r["mimetype"] for r in docs.of("stream_resource")}
    assert {"application/x-zarr", "application/x-hdf5"} <= mimetypes
    assert len(docs.of("event")) == 3
    assert [e["data"]["focus"] for e in docs.of("event")] == pytest.approx([0, 1, 2])
