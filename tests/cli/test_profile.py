"""How a session finds its instrument profile, and what the packaged default holds."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from faro_bluesky.cli import default_profile, find_profile, load_profile, main
from faro_bluesky.cli._profile import mm_config_from

REPO = Path(__file__).parents[2]


def make_profile(root: Path) -> Path:
    for package in ("devices", "plans"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    return root


def test_flag_then_env_then_working_directory_then_default(tmp_path):
    flag, env, cwd = (make_profile(tmp_path / name) for name in ("flag", "env", "cwd"))
    plain = tmp_path / "plain"
    plain.mkdir()
    environ = {"FARO_PROFILE": str(env)}
    assert find_profile(flag, env=environ, cwd=cwd) == flag.resolve()
    assert find_profile(None, env=environ, cwd=cwd) == env.resolve()
    assert find_profile(None, env={}, cwd=cwd) == cwd.resolve()
    assert find_profile(None, env={}, cwd=plain) == default_profile()


def test_a_named_profile_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--profile=.*not a profile"):
        find_profile(tmp_path, env={}, cwd=tmp_path)
    with pytest.raises(ValueError, match="FARO_PROFILE"):
        find_profile(None, env={"FARO_PROFILE": str(tmp_path)}, cwd=tmp_path)
    assert main(["shell", "--profile", str(tmp_path)]) == 2  # before any session opens


def test_micro_manager_config_from_flag_or_env(tmp_path):
    cfg = tmp_path / "scope.cfg"
    cfg.write_text("")
    assert mm_config_from(None, env={}) is None  # the simulation
    assert mm_config_from(None, env={"FARO_MM_CONFIG": str(cfg)}) == cfg
    assert mm_config_from(cfg, env={"FARO_MM_CONFIG": "elsewhere.cfg"}) == cfg
    with pytest.raises(ValueError, match=r"FARO_MM_CONFIG=missing\.cfg"):
        mm_config_from(None, env={"FARO_MM_CONFIG": "missing.cfg"})


def test_the_default_is_the_repository_s_profile_and_the_wheel_carries_it():
    assert default_profile() == REPO.resolve()  # a source checkout / editable install
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    included = build["targets"]["wheel"]["force-include"]
    packaged = {f"faro_bluesky/_profile/{name}" for name in ("devices", "plans")}
    assert set(included.values()) == packaged and set(included) == {"devices", "plans"}


def test_the_default_profile_s_plans_and_a_second_load_are_separate():
    one, two = load_profile(default_profile()), load_profile(default_profile())
    assert {"demo", "demo_phases", "calibrate_away", "pulse_train", "dose_response"} <= set(
        one.plan_functions()
    )
    assert one.plans.__name__ != two.plans.__name__  # never the top-level name `plans`
    assert callable(one.devices.instruments)
