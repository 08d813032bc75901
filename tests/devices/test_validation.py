"""Bad input fails before anything moves, with a message naming the problem and the fix."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky.utils import FailedStatus

from faro_bluesky.devices import LightSetting


def test_stage_target_outside_limits(RE, docs, scope):
    before = scope.core.getXYPosition()
    with pytest.raises(ValueError, match=r"stage\.x=25000 µm is outside the stage limits.*inside"):
        RE(bps.mv(scope.stage, (25_000, 0)))
    with pytest.raises(ValueError, match=r"stage\.y=-30000 µm"):
        RE(bps.mv(scope.stage.y, -30_000))
    with pytest.raises(ValueError, match=r"\(x, y\) pair"):
        scope.stage.check_value(5.0)
    assert scope.core.getXYPosition() == before


def test_grid_scan_beyond_limits_emits_nothing_after_check(RE, docs, scope):
    # bluesky's own plans don't pre-check; a plan that checks first emits no documents
    def checked(plan_args):
        for target in (0, 50_000):
            scope.stage.x.check_value(target)
        yield from bp.scan(*plan_args)

    with pytest.raises(ValueError, match="outside the stage limits"):
        RE(checked(([scope.camera], scope.stage.x, 0, 50_000, 3)))
    assert docs.docs == []


def test_focus_outside_limits(RE, scope):
    with pytest.raises(ValueError, match=r"focus=900 µm is outside the stage limits \[-500, 500\]"):
        RE(bps.mv(scope.focus, 900))
    assert scope.core.getPosition() == 0


def test_unknown_preset(RE, scope):
    before = scope.core.getCurrentConfig("Channel")
    with pytest.raises(ValueError, match=r"channel\.config='GFP' is not a preset.*use one of"):
        RE(bps.mv(scope.channel, "GFP"))
    assert scope.core.getCurrentConfig("Channel") == before


def test_exposure_outside_camera_limits(RE, scope):
    with pytest.raises(ValueError, match=r"channel\.exposure=9000 ms is outside.*\[0\.1, 5000\]"):
        RE(bps.mv(scope.channel, LightSetting("miRFP", exposure=9000)))
    # a signal's setter runs inside its status: bluesky reports FailedStatus, same message
    with pytest.raises(FailedStatus, match=r"camera\.exposure=-1 ms must be > 0") as info:
        RE(bps.mv(scope.camera.exposure, -1))
    assert isinstance(info.value.__cause__, ValueError)
    assert scope.core.getExposure() == 10.0
    assert scope.core.getCurrentConfig("Channel") == "BF"  # the preset did not change either


def test_power_outside_limits_or_unmapped(RE, scope):
    with pytest.raises(ValueError, match=r"power=150.*LED\.Cyan_Level limits \[0, 100\]"):
        RE(bps.mv(scope.channel, LightSetting("Cyan", 100, 150)))
    scope.channel.power_properties.pop("BF")
    with pytest.raises(ValueError, match=r"no power property: pass power_properties"):
        RE(bps.mv(scope.channel, LightSetting("BF", 10, 5)))
    assert scope.core.getProperty("LED", "Cyan_Level") == 10.0


def test_good_setting_is_one_move(RE, docs, scope):
    RE(bps.mv(scope.channel, {"config": "Cyan", "exposure": 120, "power": 33}))
    assert scope.core.getCurrentConfig("Channel") == "Cyan"
    assert scope.core.getExposure() == 120
    assert scope.core.getProperty("LED", "Cyan_Level") == 33
    RE(bp.count([scope.channel]))
    data = docs.of("event")[0]["data"]
    assert data["channel-config"] == "Cyan"
    assert data["channel-power"] == 33


def test_stage_stop_halts_a_move_midway(RE, tmp_path):
    from faro_bluesky.sim import sim_microscope

    scope = sim_microscope(data_dir=tmp_path, image_shape=(64, 64), stage_speed_um_s=200.0)
    statuses = []

    def plan():
        statuses.append((yield from bps.abs_set(scope.stage, (2000, 0), group="move")))
        yield from bps.stop(scope.stage)
        yield from bps.wait(group="move")

    RE(plan())
    x, _ = scope.core.getXYPosition()
    assert 0 <= x < 2000
    assert not scope.core.deviceBusy("XY")
    assert statuses[0].done and statuses[0].success
    assert RE(bps.rd(scope.stage.x)).plan_result == pytest.approx(x)
    scope.close()
