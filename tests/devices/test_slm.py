"""`SLM` drives any MMCore SLM in its own pixels; `DMD` is the camera-pixel layer over it;
`PatternedLight` is what a microscope carries and plans address."""

from __future__ import annotations

import tempfile

import bluesky.plan_stubs as bps
import numpy as np
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import RunEngineInterrupted
from pymmcore_plus.experimental.unicore import SLMDevice, UniMMCore

from faro_bluesky.devices import DMD, SLM, PatternedLight
from faro_bluesky.sim import sim_microscope


@pytest.fixture
def two_slms(RE, tmp_path):
    """A calibrated 256x256 sim with a second SLM (an 8-bit LCoS on the Cyan path)."""
    scope = sim_microscope(
        seed=2,
        data_dir=tmp_path / "data",
        image_shape=(256, 256),
        dmd_calibrated=True,
        second_slm=True,
    )
    yield scope
    scope.close()


def connected(device):
    call_in_bluesky_event_loop(device.connect())
    return device


def show(RE, device, value, look=lambda: None):
    """Show ``value``; its readings and ``look()`` while shown (the RunEngine blanks a
    device it moved when the plan ends)."""
    seen = {}

    def plan():
        yield from bps.mv(device, value)
        reading = yield from bps.read(device)
        seen["values"] = {k.removeprefix(f"{device.name}-"): v["value"] for k, v in reading.items()}
        seen["look"] = look()

    RE(plan())
    return seen["values"], seen["look"]


def test_slm_shows_an_image_in_its_pixels_and_reads_back_a_summary(RE, two_slms):
    slm = connected(SLM(two_slms.core, label="SLM2", name="lcos"))
    assert (slm.shape, slm.dtype, slm.bit_depth, slm.label) == ((480, 640), np.uint8, 8, "SLM2")
    assert not isinstance(slm, PatternedLight)  # SLM pixels only: it knows no camera
    image = np.zeros(slm.shape, np.uint8)
    image[100:200, 100:300] = 128
    world = two_slms.sim.world

    def look():
        return two_slms.core.getSLMImage("SLM2").copy(), slm.image, world.light_in_camera()

    got, (shown, displayed, light) = show(RE, slm, image, look)
    assert np.array_equal(shown, image)
    assert displayed is image  # what was displayed, without a copy
    assert got == {"n_on": 20_000, "fraction": 20_000 / image.size, "mean": image.mean()}
    # grey levels reach the sample through the second light path: half the light
    assert light.max() == pytest.approx(128 / 255)
    got, (shown, _, _) = show(RE, slm, True, look)
    assert shown.min() == 255 and got["fraction"] == 1.0
    got, _ = show(RE, slm, np.ones(slm.shape, bool))
    assert got["mean"] == 255.0
    assert two_slms.core.getSLMImage("SLM2").max() == 0  # blanked when the plan ended


def test_slm_exposure_is_the_cores_and_recorded_as_configuration(RE, two_slms):
    slm = connected(SLM(two_slms.core, label="SLM2", name="lcos"))
    assert RE(bps.rd(slm.exposure)).plan_result == two_slms.core.getSLMExposure("SLM2")
    RE(bps.mv(slm.exposure, 50.0))
    assert two_slms.core.getSLMExposure("SLM2") == 50.0
    config = call_in_bluesky_event_loop(slm.read_configuration())
    assert config["lcos-exposure"]["value"] == 50.0


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((10, 10), np.uint8), ValueError, r"shape \(10, 10\).*SLM pixels"),
        (np.zeros((480, 640), np.float32), ValueError, r"dtype float32.*astype"),
        ([[0, 1]], TypeError, "numpy array"),
    ],
)
def test_bad_slm_images_fail_before_the_slm_changes(RE, two_slms, image, error, match):
    slm = connected(SLM(two_slms.core, label="SLM2", name="lcos"))
    two_slms.core.setSLMImage("SLM2", np.full(slm.shape, 7, np.uint8))
    with pytest.raises(error, match=match):
        slm.set(image)
    assert np.all(two_slms.core.getSLMImage("SLM2") == 7)


def test_slm_blanks_on_pause_and_at_the_end_of_a_run(RE, two_slms):
    slm = connected(SLM(two_slms.core, label="SLM2", name="lcos"))
    seen = []

    def plan():
        yield from bps.open_run()
        yield from bps.stage(slm, wait=True)
        yield from bps.mv(slm, True)
        seen.append(two_slms.core.getSLMImage("SLM2").max())
        yield from bps.checkpoint()
        yield from bps.pause()
        yield from bps.unstage(slm, wait=True)
        yield from bps.close_run()

    with pytest.raises(RunEngineInterrupted):
        RE(plan())
    assert seen == [255]
    assert two_slms.core.getSLMImage("SLM2").max() == 0  # dark while paused
    RE.stop()
    assert two_slms.core.getSLMImage("SLM2").max() == 0


class DeepSLM(SLMDevice):
    """A 16-bit SLM: uint8 levels are scaled to its range."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = np.zeros((8, 10), np.uint16)
        self._pending = self.shown

    def shape(self):
        return (8, 10)

    def dtype(self):
        return np.uint16

    def set_image(self, pixels):
        self._pending = np.array(pixels, np.uint16)

    def get_image(self):
        return self._pending

    def display_image(self):
        self.shown = self._pending

    def set_exposure(self, interval_ms):
        pass

    def get_exposure(self):
        return 0.0


def test_a_deeper_slm_gets_its_own_dtype_and_full_range(RE):
    core = UniMMCore(mm_path=tempfile.gettempdir())
    device = DeepSLM()
    core.loadPyDevice("Deep", device)
    core.initializeAllDevices()
    try:
        slm = connected(SLM(core, label="Deep", name="deep"))
        assert (slm.dtype, slm.bit_depth, slm.full) == (np.uint16, 16, 65535)
        levels = np.zeros((8, 10), np.uint8)
        levels[0, :4] = 255
        levels[1, 0] = 51
        _, shown = show(RE, slm, levels, lambda: device.shown)
        assert shown.dtype == np.uint16
        assert shown[0, :4].tolist() == [65535] * 4 and shown[1, 0] == 13107
        native = np.full((8, 10), 1000, np.uint16)
        got, shown = show(RE, slm, native, lambda: device.shown)
        assert np.array_equal(shown, native)  # the device's own dtype: as is
        assert got["mean"] == 1000.0
    finally:
        slm._worker.shutdown()
        core.unloadAllDevices()


def test_the_dmd_is_an_slm_whose_readings_keep_their_names(RE, calibrated_scope):
    dmd = calibrated_scope.dmd
    assert isinstance(dmd, SLM) and isinstance(dmd, PatternedLight)
    got, _ = show(RE, dmd, True)
    assert got == {"n_on": dmd.shape[0] * dmd.shape[1], "fraction": 1.0, "mean": 255.0}
    config = call_in_bluesky_event_loop(dmd.read_configuration())
    assert set(config) == {"dmd-calibration", "dmd-exposure"}


def test_the_sim_carries_a_second_calibrated_patterned_light(RE, two_slms):
    second = two_slms.patterned_lights["slm2"]
    assert isinstance(second, DMD) and second.label == "SLM2" and second.name == "slm2"
    assert list(two_slms.patterned_lights) == ["dmd", "slm2"]
    assert [d.name for d in two_slms.devices()][-2:] == ["dmd", "slm2"]
    np.testing.assert_array_equal(second.affine, two_slms.sim.true_affines["slm2"])
    assert second.shape == (480, 640) and second.camera_shape == (256, 256)


def test_microscope_resolves_and_checks_patterned_lights(RE, two_slms):
    scope = two_slms
    assert scope.patterned_light() is scope.dmd
    assert scope.patterned_light("slm2") is scope.patterned_lights["slm2"]
    assert scope.patterned_light(scope.dmd) is scope.dmd
    with pytest.raises(ValueError, match=r"'slm3'.*\['dmd', 'slm2'\]"):
        scope.patterned_light("slm3")
    with pytest.raises(TypeError, match="not a PatternedLight"):
        scope.patterned_light(object())
    raw = SLM(scope.core, label="SLM2", name="raw")
    with pytest.raises(TypeError, match="not a PatternedLight"):
        scope.add_patterned_light("raw", raw)  # SLM pixels only: not a mask projector
    with pytest.raises(ValueError, match="already has a patterned light 'slm2'"):
        scope.add_patterned_light("slm2", scope.dmd)
    scope.dmd, dmd = None, scope.dmd
    assert scope.patterned_light() is None and list(scope.patterned_lights) == ["slm2"]
    scope.dmd = dmd
    assert scope.patterned_light() is dmd
