"""`Microscope.from_core` works on any core, e.g. one loaded from a config without an SLM."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest

from faro_bluesky.devices import Microscope
from faro_bluesky.sim import SimSample, SimWorld


@pytest.fixture
def plain_core():
    import tempfile

    from pymmcore_plus.experimental.unicore import UniMMCore

    from faro_bluesky.sim._devices import SimCamera, SimFilter, SimXYStage, SimZStage

    world = SimWorld(
        SimSample(0),
        image_shape=(64, 80),
        pixel_size_um=1.0,
        dmd_shape=(60, 80),
        dmd_rotation_deg=0,
        dmd_scale=1,
        dmd_shift=(0, 0),
        seed=0,
    )
    core = UniMMCore(mm_path=tempfile.gettempdir())
    core.loadPyDevice("Cam", SimCamera(world, (1.0, 100.0)))
    core.loadPyDevice("Stage", SimXYStage(world, ((-1e4, 1e4), (-1e4, 1e4)), 1e4))
    core.loadPyDevice("Piezo", SimZStage(world, (-50, 50)))
    core.loadPyDevice("Cube", SimFilter(world))
    core.initializeAllDevices()
    core.setCameraDevice("Cam")
    core.setXYStageDevice("Stage")
    core.setFocusDevice("Piezo")
    core.defineConfig("Filters", "DAPI", "Cube", "Label", "miRFP")
    core.setChannelGroup("Filters")
    yield core
    core.unloadAllDevices()


def test_from_core_without_slm(RE, docs, plain_core, tmp_path):
    scope = Microscope.from_core(plain_core, data_dir=tmp_path, name="left")
    assert scope.dmd is None
    assert [d.name for d in scope.devices()] == [
        "left-stage",
        "left-focus",
        "left-camera",
        "left-channel",
    ]
    assert scope.channel.presets() == ("DAPI",)
    assert RE(bps.rd(scope.channel.config)).plan_result == ""  # filter not at a preset yet
    RE(bps.mv(scope.channel, "DAPI"))
    RE(bp.count([scope.camera, scope.channel], num=2))
    key = docs.of("descriptor")[0]["data_keys"]["left-camera"]
    assert key["shape"] == [1, 64, 80]
    assert docs.of("event")[0]["data"]["left-channel-config"] == "DAPI"
    scope.close()


def test_microscope_needs_a_run_engine_first(plain_core, tmp_path, monkeypatch):
    import bluesky.run_engine

    monkeypatch.setattr(bluesky.run_engine, "_bluesky_event_loop", None)
    with pytest.raises(RuntimeError, match="create the RunEngine before the microscope"):
        Microscope.from_core(plain_core, data_dir=tmp_path)
