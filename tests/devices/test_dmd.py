"""The DMD warps camera-space masks with its calibration and blanks when it must."""

from __future__ import annotations

import threading

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from faro_bluesky.devices import LightSetting, warp


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
