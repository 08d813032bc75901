"""Plans and validation address patterned lights through the protocol: a second SLM
stimulates where its mask says, and a missing or uncalibrated light is named with its fix."""

from __future__ import annotations

import numpy as np
import pytest

from faro_bluesky.plans import Channel, ExperimentError, Phase, calibrate_dmd, optogenetic_plan

STIM = Phase(
    "stim",
    interval=0.05,
    n_frames=1,
    channels=[Channel("miRFP", 10)],
    stim_channels=[Channel("Cyan", 100, 20)],
    stim_frames=(0,),
)


@pytest.fixture
def two_slms(RE, tmp_path):
    """A 256x256 sim with a second SLM (an 8-bit LCoS on the Cyan path), both calibrated."""
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(
        seed=2,
        data_dir=tmp_path / "data",
        image_shape=(256, 256),
        dmd_calibrated=True,
        second_slm=True,
    )
    yield scope
    scope.close()


def test_a_plan_stimulates_through_the_second_slm_where_its_mask_says(RE, docs, two_slms):
    scope = two_slms
    world = scope.sim.world
    gt = scope.sim.ground_truth()
    target = int(np.argmin(np.abs(gt.xy_px - 128).sum(axis=1)))  # a cell near the centre
    mask = gt.cells == target + 1  # exactly that cell, in camera pixels
    world.record_frames()

    result = RE(
        optogenetic_plan(
            [(0.0, 0.0)], [STIM], microscope=scope, stim_mask=mask, patterned_light="slm2"
        )
    )

    assert result.exit_status == "success"
    # the sample got light on that cell only, through the second light path
    activity = scope.sim.sample.activity(gt.ids)
    assert activity[target] > 0
    assert np.all(np.delete(activity, target) == 0)
    assert world.optics.dmd_image is None or not world.optics.dmd_image.any()  # DMD unused
    # the stim readout frame shows the second SLM's light on the cell
    _, stim = (frame.astype(float) for frame in world.recorded)
    assert stim[mask].mean() > stim[gt.cells == 0].mean() + 300
    # every frame's event carries the light that fired, and the start document names it
    events = [e for e in docs.of("event") if "visit-kind" in e["data"]]
    kinds = {e["data"]["visit-kind"]: e["data"] for e in events}
    assert 0 < kinds["stim"]["slm2-fraction"] < 0.05 and "dmd-fraction" not in kinds["stim"]
    assert kinds["image"]["slm2-n_on"] == 0  # dark while imaging
    (start,) = docs.of("start")
    assert start["plan_args"]["patterned_light"] == "slm2"
    assert world.light_paths[0].image.max() == 0  # dark at the end


def test_the_default_light_is_still_scope_dmd(RE, docs, two_slms):
    mask = np.zeros(two_slms.dmd.camera_shape, bool)
    mask[100:140, 100:140] = True
    plan = optogenetic_plan([(0.0, 0.0)], [STIM], microscope=two_slms, stim_mask=mask)
    assert plan.light is two_slms.dmd
    RE(plan)
    stim = next(e["data"] for e in docs.of("event") if e["data"].get("visit-kind") == "stim")
    assert stim["dmd-fraction"] > 0 and "slm2-fraction" not in stim
    assert docs.of("start")[0]["plan_args"]["patterned_light"] == "dmd"


def problems(**kw):
    with pytest.raises(ExperimentError) as info:
        optogenetic_plan([(0.0, 0.0)], [STIM], **kw)
    return str(info.value)


def test_validation_names_the_light_and_its_fix(RE, docs, two_slms):
    scope = two_slms
    mask = np.ones(scope.dmd.camera_shape, bool)
    text = problems(microscope=scope, stim_mask=mask, patterned_light="slm3")
    assert "patterned_light='slm3'" in text and "['dmd', 'slm2']" in text
    text = problems(microscope=scope, stim_mask=mask, patterned_light=object())
    assert "not a PatternedLight" in text
    scope.patterned_lights["slm2"].affine = None
    text = problems(microscope=scope, stim_mask=mask, patterned_light="slm2")
    assert "calibrate_dmd(scope, patterned_light='slm2')" in text
    # no light at all: the message names the real class and parameters, not "add an SLM"
    scope.dmd, dmd = None, scope.dmd
    try:
        text = problems(microscope=scope, stim_mask=mask)
    finally:
        scope.dmd = dmd
    assert "add an SLM" not in text
    for needle in ("slms={'dmd'", "DMD(core, label=", "patterned_light= one of ['slm2']"):
        assert needle in text
    assert docs.docs == []


def test_calibrate_dmd_calibrates_the_second_slm(RE, two_slms):
    scope = two_slms
    second = scope.patterned_lights["slm2"]
    second.affine = None
    affine = RE(calibrate_dmd(scope, patterned_light="slm2")).plan_result
    assert second.affine is not None and np.array_equal(second.affine, affine)
    # compared where the camera sees the SLM: the corners of the camera image
    from faro_bluesky.devices import apply_affine

    corners = [(0, 0), (255, 0), (0, 255), (255, 255)]
    truth = scope.sim.true_affines["slm2"]
    assert np.abs(apply_affine(affine, corners) - apply_affine(truth, corners)).max() < 1.5
    np.testing.assert_array_equal(scope.dmd.affine, scope.sim.true_affine)  # untouched
