"""The session `faro-bluesky shell` builds: persistent RE.md, baseline, profile, magics."""

from __future__ import annotations

import textwrap

import bluesky.plans as bp
import pytest
from bluesky.run_engine import get_bluesky_event_loop
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from faro_bluesky.cli import default_profile, open_session
from faro_bluesky.cli._magics import register_magics

CUSTOM_DEVICES = """
from ophyd_async.core import init_devices
from ophyd_async.sim import SimMotor

from faro_bluesky.sim import sim_microscope

CLOSED = []


def instruments(setup):
    scope = sim_microscope(1, data_dir=setup.data_dir, image_shape=(64, 64))
    with init_devices():
        slit = SimMotor(units="mm")
    setup.baseline.append(slit)
    setup.label("motors", slit)
    setup.label("detectors", scope.camera)
    setup.on_close(lambda: CLOSED.append("slit"))
    return {"scope": scope, "slit": slit, "camera": scope.camera}
"""

CUSTOM_PLANS = '''
import bluesky.plans as bp

from ..devices import CLOSED  # plans reach devices relatively, inside the profile


def wiggle(motor, detectors, n=3):
    """Scan ``motor`` over 0..1 mm."""
    return (yield from bp.scan(list(detectors), motor, 0, 1, n))


def _helper():
    return CLOSED
'''


def write_profile(root):
    for package, source in (("devices", CUSTOM_DEVICES), ("plans", CUSTOM_PLANS)):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(textwrap.dedent(source))
    return root


def baseline(run):
    return run.tiled["baseline"].read()  # an xarray Dataset, one row per reading


def open_custom(root):
    return open_session(
        root / "data",
        profile=root / "profile",
        progress=False,
        feedback=False,
        context_managers=[],
    )


def test_a_profile_s_devices_and_plans_load_and_scan_id_goes_on_across_sessions(tmp_path):
    write_profile(tmp_path / "profile")
    first = open_custom(tmp_path)
    try:
        ns = first.namespace()
        assert {"slit", "camera", "wiggle"} <= set(ns)
        assert "_helper" not in ns  # only the public functions the profile defines
        result = first.RE(ns["wiggle"](ns["slit"], [ns["camera"]]))
        assert result.exit_status == "success"
        run = first.catalog[-1]
        assert run.start["plan_name"] == "scan"
        (described,) = [d for d in run.descriptors if d["name"] == "baseline"]
        assert "slit" in described["data_keys"]
        scan_id = run.start["scan_id"]
        closed = first.profile.devices.CLOSED
        assert closed == []
    finally:
        first.close()
    assert closed == ["slit"]  # the profile's clean-ups ran
    assert (tmp_path / "data" / "md").is_dir()  # RE.md persists beside the catalog
    second = open_custom(tmp_path)
    try:
        assert second.RE.md["scan_id"] == scan_id
        second.RE(bp.count([second.scope.camera]))
        assert second.catalog[-1].start["scan_id"] == scan_id + 1
    finally:
        second.close()


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    session = open_session(
        root / "data", profile=default_profile(), progress=False, context_managers=[]
    )
    yield session
    session.close()


def test_the_default_profile_runs_its_plans_with_a_baseline(default):
    plan = default.namespace()["pulse_train"]
    result = default.RE(
        plan([(0, 0)], pulses=1, every=1, interval=0.01, baseline_frames=1, recovery_frames=1)
    )
    assert result.exit_status == "success"
    run = default.catalog[-1]
    assert run.start["protocol"] == "pulse_train"
    readings = baseline(run)
    assert {"stage-x", "stage-y", "focus", "channel-config", "incubator"} <= set(readings.data_vars)
    assert readings["incubator"].size == 2  # at the start and at the end
    assert len(default.RE.suspenders) == 1  # the incubator's


@pytest.fixture
def shell(default, tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config, user_ns=default.namespace())
    register_magics(ip, default.RE)
    yield ip
    InteractiveShell.clear_instance()


def value_of(out: str, key: str) -> float:
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [key]]
    return float(line.split()[1])


def test_magics_move_and_read_ophyd_async_devices_without_saving(default, shell, capsys):
    assert get_bluesky_event_loop() is default.RE.loop  # bluesky.magics' own loop undone
    runs, scan_id = len(default.catalog), default.RE.md.get("scan_id")
    shell.run_line_magic("mov", "focus 2.5 stage.x 100")
    shell.run_line_magic("movr", "stage.x -40")
    capsys.readouterr()
    shell.run_line_magic("wa", "motors")
    out = capsys.readouterr().out
    assert value_of(out, "focus") == 2.5
    assert value_of(out, "stage-x") == 60.0
    assert "devices: focus (focus), stage (stage)" in out
    shell.run_line_magic("ct", "")
    out = capsys.readouterr().out
    assert value_of(out, "incubator") == pytest.approx(37.0)
    assert "<frame 1x512x512 <u2>" in out  # the camera's frame, named
    assert len(default.catalog) == runs and default.RE.md.get("scan_id") == scan_id
