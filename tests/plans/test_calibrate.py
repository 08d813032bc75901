"""calibrate_dmd recovers the misaligned sim projector's affine, or fails cleanly."""

from __future__ import annotations

import json

import bluesky.plan_stubs as bps
import numpy as np
import pytest

from faro_bluesky.devices import LightSetting
from faro_bluesky.devices._affine import apply
from faro_bluesky.plans._calibrate import calibrate_dmd, detect_spot


def camera_grid(shape, n=9):
    h, w = shape
    xs, ys = np.meshgrid(np.linspace(0, w - 1, n), np.linspace(0, h - 1, n))
    return np.column_stack([xs.ravel(), ys.ravel()])


def max_error(affine, truth, shape):
    pts = camera_grid(shape)
    return np.linalg.norm(apply(affine, pts) - apply(truth, pts), axis=1).max()


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_recovers_the_true_affine_and_records_it(RE, docs, scope):
    assert scope.dmd.affine is None
    result = RE(calibrate_dmd(scope))
    affine = result.plan_result
    assert result.exit_status == "success"
    assert affine.shape == (3, 3)
    assert max_error(affine, scope.sim.true_affine, scope.dmd.camera_shape) < 1.0
    np.testing.assert_array_equal(scope.dmd.affine, affine)

    (start,) = docs.of("start")
    assert start["plan_name"] == "calibrate_dmd"
    assert start["plan_type"] == "generator"  # bluesky's keys, as optogenetic_plan's (0043)
    assert start["detectors"] == [scope.camera.name] and start["motors"] == []
    assert start["hints"] == {"dimensions": [(["time"], "primary")]}
    assert start["plan_args"]["n_points"] == 9 and start["plan_args"]["position"] is None
    assert json.loads(json.dumps(start["plan_args"], allow_nan=False)) == start["plan_args"]
    assert start["n_points"] == 9 and start["radius"] == 4
    assert start["channel"]["config"] == "Cyan"
    streams = {d["name"]: d for d in docs.of("descriptor")}
    assert {"locate", "primary", "calibration"} <= set(streams)
    config = streams["calibration"]["configuration"]["dmd"]["data"]["dmd-calibration"]
    np.testing.assert_allclose(np.reshape(config, (3, 3)), affine)
    primary = streams["primary"]["uid"]
    assert sum(e["descriptor"] == primary for e in docs.of("event")) == 9
    (fit,) = [e for e in docs.of("event") if e["descriptor"] == streams["calibration"]["uid"]]
    assert fit["data"]["dmd_fit-n_inliers"] >= 4
    assert fit["data"]["dmd_fit-rms_px"] < 1.0
    assert docs.of("stop")[0]["exit_status"] == "success"
    assert scope.core.getSLMImage().max() == 0  # blank after
    assert not scope.sim.world.light_in_camera().any()


def test_calibrated_mask_lights_its_cell_and_identity_misses(RE, scope):
    gt = scope.sim.ground_truth()
    k = int(np.argmin(np.abs(gt.xy_px - 128).sum(axis=1))) + 1  # a cell near the centre
    target = gt.cells == k
    assert target.sum() > 50
    seen = {}

    def project(key):
        yield from bps.mv(scope.channel, LightSetting("Cyan", 25, 10))
        yield from bps.mv(scope.dmd, target)
        seen[key] = scope.sim.world.light_in_camera() > 0.5  # before the RE blanks it

    def plan():
        yield from calibrate_dmd(scope)
        yield from project("calibrated")

    RE(plan())
    assert iou(seen["calibrated"], target) > 0.85
    scope.dmd.affine = np.eye(3)
    RE(project("identity"))
    assert iou(seen["identity"], target) < 0.2


@pytest.mark.parametrize("locate", [True, False])
def test_no_light_raises_and_leaves_no_affine(RE, docs, scope, locate):
    with pytest.raises(RuntimeError, match="spots"):
        RE(calibrate_dmd(scope, channel=LightSetting("Cyan", 25, 0), locate=locate))
    assert scope.dmd.affine is None
    assert docs.of("stop")[0]["exit_status"] == "fail"
    assert scope.core.getSLMImage().max() == 0


def test_failure_keeps_a_previous_calibration(RE, calibrated_scope):
    scope = calibrated_scope
    before = scope.dmd.affine.copy()
    with pytest.raises(RuntimeError, match="power/exposure"):
        RE(calibrate_dmd(scope, channel=LightSetting("Cyan", 25, 0)))
    np.testing.assert_array_equal(scope.dmd.affine, before)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_points": 2}, "n_points=2.*>= 4"),
        ({"border": 400}, "border=400"),
        ({"radius": 0}, "radius=0"),
        ({"min_inliers": 20}, "min_inliers=20"),
        ({"channel": LightSetting("Nope", 25, 10)}, "Nope"),
        ({"channel": LightSetting("Cyan", -1, 10)}, "exposure"),
    ],
)
def test_bad_parameters_fail_before_any_document(RE, docs, scope, kwargs, match):
    scope.core.setSLMImage(np.full(scope.dmd.shape, 7, np.uint8))
    with pytest.raises(ValueError, match=match):
        RE(calibrate_dmd(scope, **kwargs))
    assert docs.docs == []
    assert np.all(scope.core.getSLMImage() == 7)  # nothing moved
    assert scope.dmd.affine is None


def test_microscope_without_dmd_is_refused(scope):
    scope.dmd, dmd = None, scope.dmd
    try:
        with pytest.raises(ValueError, match="no DMD"):
            calibrate_dmd(scope)
    finally:
        scope.dmd = dmd


@pytest.mark.parametrize("locate", [True, False])
def test_small_dmd_inside_the_camera_view(RE, tmp_path, locate):
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(seed=3, data_dir=tmp_path, image_shape=(256, 256), dmd_shape=(120, 160))
    try:
        affine = RE(calibrate_dmd(scope, border=10, locate=locate)).plan_result
        # only the camera pixels that see the DMD can be checked against the truth
        inv = np.linalg.inv(scope.sim.true_affine)
        corners = apply(inv, [(10, 10), (149, 10), (10, 109), (149, 109)])
        err = np.linalg.norm(apply(affine, corners) - apply(scope.sim.true_affine, corners), axis=1)
        assert err.max() < 1.0
    finally:
        scope.close()


def test_detect_spot_subpixel_and_rejects_noise():
    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[:64, :64]
    spot = 100 * np.exp(-((cc - 20.3) ** 2 + (rr - 40.6) ** 2) / (2 * 2.0**2))
    image = 100 + spot + rng.normal(0, 3, (64, 64))
    x, y = detect_spot(image)
    assert abs(x - 20.3) < 0.2 and abs(y - 40.6) < 0.2
    assert detect_spot(100 + rng.normal(0, 3, (64, 64))) is None


def _mean_activity_in_view(scope, xy):
    sample = scope.sim.sample
    w, h = scope.field_of_view_um()
    cells = sample.cells_in(
        xy[0] - w / 2, xy[1] - h / 2, xy[0] + w / 2, xy[1] + h / 2, sample.now()
    )
    return float(np.mean(sample.activity(cells.ids))) if len(cells.ids) else 0.0


def test_calibration_away_from_the_fovs_leaves_them_at_rest(RE, docs, scope):
    from faro_bluesky.plans import Channel, Phase, optogenetic_plan

    fov = (0.0, 0.0)
    away = (0.0, -3 * scope.field_of_view_um()[1])
    result = RE(calibrate_dmd(scope, position=away))
    assert max_error(result.plan_result, scope.sim.true_affine, scope.dmd.camera_shape) < 1.0
    (start,) = docs.of("start")
    assert start["plan_args"]["position"] == list(away)
    assert start["motors"] == [scope.stage.name]  # it moved the stage there
    assert scope.lit_positions == [away]
    assert _mean_activity_in_view(scope, fov) < 0.05  # FOV 0's cells were not lit
    assert _mean_activity_in_view(scope, away) > 0.2  # where the light went, they were
    phase = Phase("p", interval=1, n_frames=1, channels=[Channel("miRFP", 5)])
    assert optogenetic_plan([fov], [phase], microscope=scope).warnings == []
    (warning,) = optogenetic_plan([away], [phase], microscope=scope).warnings
    assert "overlaps the field calibrate_dmd lit" in warning and "position=" in warning


def test_calibration_position_is_checked_before_anything_moves(RE, docs, scope):
    for bad in [(1e9, 0), ("a", 0), (float("nan"), 0), (1, 2, 3)]:
        with pytest.raises(ValueError):
            calibrate_dmd(scope, position=bad)
    assert docs.of("start") == [] and scope.lit_positions == []
