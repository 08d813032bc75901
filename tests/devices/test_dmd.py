"""The DMD warps camera-space masks with its calibration and blanks when it must."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from faro_bluesky.devices import LightSetting, similarity, warp


def disk(shape, xy, radius):
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    return (rr - xy[1]) ** 2 + (cc - xy[0]) ** 2 < radius**2


def test_mask_reaches_slm_warped_by_the_affine(RE, calibrated_scope):
    scope = calibrated_scope
    mask = disk(scope.dmd.camera_shape, (60, 100), 12)
    RE(
        bps.mv(scope.dmd, mask),
    )
    # the plan is over, so the RunEngine stopped (blanked) the DMD: check what was sent
    expected = warp(mask.view(np.uint8), scope.sim.true_affine, scope.dmd.shape) * 255
    np.testing.assert_array_equal(scope.dmd.to_dmd(mask), expected)
    # the spot's centre lands where the affine sends it, not at the camera coordinates
    dmd_img = scope.dmd.to_dmd(mask)
    rows, cols = np.nonzero(dmd_img)
    centre = np.array([cols.mean(), rows.mean()])
    from faro_bluesky.devices._affine import apply

    np.testing.assert_allclose(centre, apply(scope.sim.true_affine, [(60, 100)])[0], atol=1.0)
    assert np.linalg.norm(centre - [60, 100]) > 20  # misalignment is real


def test_spot_lights_only_the_cells_under_it(RE, calibrated_scope):
    scope = calibrated_scope
    gt = scope.sim.ground_truth()
    target = int(np.argmin(np.abs(gt.xy_px - 128).sum(axis=1)))  # a cell near the centre
    mask = gt.cells == target + 1  # exactly that cell, in camera pixels
    seen = {}

    def plan():
        yield from bps.mv(scope.dmd, mask, scope.channel, LightSetting("Cyan", 100, 20))
        seen["slm"] = scope.core.getSLMImage().copy()
        yield from bp.count([scope.camera])

    RE(plan())
    frame = scope.camera.frames.latest.image.astype(float)
    lit = frame[mask].mean()
    dark = frame[(gt.cells == 0)].mean()
    assert lit > dark + 300  # the stim readout frame shows the light on that cell
    activity = scope.sim.sample.activity(gt.ids)
    assert activity[target] > 0
    others = np.delete(activity, target)
    assert np.all(others == 0)


def test_uncalibrated_dmd_lights_the_wrong_place(RE, tmp_path):
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(seed=2, data_dir=tmp_path, image_shape=(256, 256))
    gt = scope.sim.ground_truth()
    mask = gt.cells == 1
    with pytest.raises(ValueError, match="not calibrated"):
        RE(bps.mv(scope.dmd, mask))
    scope.dmd.affine = np.eye(3)  # a naive identity "calibration"
    RE(bps.mv(scope.dmd, mask, scope.channel, LightSetting("Cyan", 100, 20)))
    # with identity the light misses most of the intended cell
    light = scope.sim.world.light_in_camera()
    assert light[mask].mean() < 0.5
    scope.close()


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (np.zeros((10, 10), bool), ValueError, r"shape \(10, 10\).*camera pixels"),
        (np.zeros((256, 256), np.float32), ValueError, r"dtype float32.*astype\(bool\)"),
        (np.zeros((256, 256), np.int16), ValueError, "unsigned"),
        ([[0, 1]], TypeError, "numpy array"),
    ],
)
def test_bad_masks_fail_before_the_dmd_changes(RE, calibrated_scope, mask, error, match):
    scope = calibrated_scope
    scope.core.setSLMImage(np.full(scope.dmd.shape, 7, np.uint8))
    with pytest.raises(error, match=match):
        scope.dmd.set(mask)  # raises before any status exists
    assert np.all(scope.core.getSLMImage() == 7)  # never touched
    with pytest.raises(error, match=match):
        RE(bps.mv(scope.dmd, mask))  # the plan sees the same clear error
    # the RunEngine's cleanup blanks the DMD it was asked to move: safe, never the bad mask
    assert np.all(scope.core.getSLMImage() == 0)


def test_whole_field_and_blank_need_no_calibration(RE, scope):
    images = []

    def plan():
        yield from bps.mv(scope.dmd, True)
        images.append(scope.core.getSLMImage().copy())
        yield from bps.mv(scope.dmd, False)
        images.append(scope.core.getSLMImage().copy())

    RE(plan())
    assert images[0].min() == 255
    assert images[1].max() == 0


def test_dmd_blanks_when_paused_and_stays_dark_until_replotted(RE, calibrated_scope):
    scope = calibrated_scope
    mask = disk(scope.dmd.camera_shape, (128, 128), 30)
    shown = threading.Event()

    def plan():
        yield from bps.open_run()
        yield from bps.mv(scope.dmd, mask)
        shown.set()
        yield from bps.checkpoint()
        yield from bps.pause()
        yield from bps.close_run()

    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    assert shown.is_set()
    assert RE.state == "paused"
    assert scope.core.getSLMImage().max() == 0  # blanked on pause
    RE.stop()
    assert scope.core.getSLMImage().max() == 0


def test_dmd_blanks_on_abort(RE, calibrated_scope):
    scope = calibrated_scope
    mask = disk(scope.dmd.camera_shape, (128, 128), 30)
    lit = []

    def plan():
        yield from bps.open_run()
        yield from bps.mv(scope.dmd, mask)
        lit.append(scope.core.getSLMImage().max())
        yield from bps.pause()
        yield from bps.close_run()

    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    result = RE.abort("test")
    assert lit == [255]
    assert result.exit_status == "abort"
    assert scope.core.getSLMImage().max() == 0


@pytest.mark.parametrize(
    "affine",
    [
        None,  # the sim's true calibration
        similarity(rotation_deg=33.0, scale=0.71, dst_center=(400.3, 300.7), shift=(-2.5, 9.1)),
        similarity(rotation_deg=-4.0, scale=2.6, src_center=(128, 128), dst_center=(400, 300)),
        np.array([[-1.0, 0.0, 500.0], [0.0, 1.0, 40.0], [0.0, 0.0, 1.0]]),  # mirrored
        np.array([[1.2, 0.35, -60.0], [-0.1, 0.9, 420.0], [0.0, 0.0, 1.0]]),  # sheared, cut off
    ],
    ids=["true", "rotated", "magnified", "mirrored", "sheared"],
)
def test_the_warp_lookup_lights_the_mirrors_the_warp_lights(RE, calibrated_scope, affine):
    """The precomputed camera-pixel-per-mirror map gives, mirror for mirror, the image the
    nearest-neighbour warp gives, with pixels cut by the edges and masks of any content."""
    dmd = calibrated_scope.dmd
    if affine is not None:
        dmd.affine = affine
    rng = np.random.default_rng(0)
    shape = dmd.camera_shape
    edges = np.zeros(shape, bool)
    edges[0], edges[-1], edges[:, 0], edges[:, -1] = True, True, True, True
    masks = [
        rng.random(shape) < 0.5,
        rng.random(shape) < 0.01,
        disk(shape, (60, 100), 12),
        edges,
        np.ones(shape, bool),
        (rng.random(shape) < 0.3).astype(np.uint16) * 7,  # unsigned, non-zero = light
    ]
    for mask in masks:
        expected = warp((mask != 0).view(np.uint8), dmd.affine, dmd.shape) * 255
        np.testing.assert_array_equal(dmd.to_dmd(mask), expected)
    lit = dmd.to_dmd(np.ones(shape, bool)) > 0
    np.testing.assert_array_equal(lit, dmd.index_map() >= 0)  # -1: no camera pixel there


def test_the_warp_lookup_follows_a_new_calibration(RE, calibrated_scope):
    dmd = calibrated_scope.dmd
    mask = disk(dmd.camera_shape, (60, 100), 12)
    first = dmd.to_dmd(mask)
    moved = dmd.affine.copy()
    moved[:2, 2] += (37.0, -21.0)  # the projector was nudged and recalibrated
    dmd.affine = moved
    again = dmd.to_dmd(mask)
    assert not np.array_equal(again, first)
    np.testing.assert_array_equal(again, warp(mask.view(np.uint8), moved, dmd.shape) * 255)
    dmd.affine = None
    with pytest.raises(ValueError, match="not calibrated"):
        dmd.index_map()
