"""What the RE Manager is shown of our plans, and the command line, without a server."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from bluesky.utils import MsgGenerator

from faro_bluesky.cli import default_profile, main
from faro_bluesky.cli._queue import http_address
from faro_bluesky.devices import Microscope
from faro_bluesky.plans import Channel, Phase, Wait, optogenetic_plan
from faro_bluesky.queue import experiment_arg, queueable, write_permissions

NUCLEI = Channel("miRFP", 50)


def protocol(
    scope: Microscope, frames: int = 2, imaging: Channel = NUCLEI, md: dict | None = None
) -> MsgGenerator:
    """A profile-style plan: the scope, a number, a preset."""
    yield from ()
    return (scope, frames, imaging, md)


def helper(frames: int = 2) -> list[Any]:
    """Not a plan: a profile's helper such as demo_phases."""
    return [frames]


def test_scope_is_filled_in_and_models_travel_as_dicts() -> None:
    scope: Any = object()
    plan = queueable(protocol, scope)  # type: ignore[arg-type]
    assert plan is not None and inspect.isgeneratorfunction(plan)
    params = inspect.signature(plan).parameters
    assert list(params) == ["frames", "imaging", "md"]
    assert params["imaging"].default == {
        "config": "miRFP",
        "exposure": 50.0,
        "power": None,
        "group": None,
    }
    assert params["frames"].annotation is int  # resolved: the RE Manager can check it
    gen = plan(frames=3, imaging={"config": "Cyan", "exposure": 10})
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert done.value.value == (scope, 3, Channel("Cyan", 10), None)


def test_optogenetic_plan_takes_json_phases() -> None:
    plan = queueable(optogenetic_plan, object())  # type: ignore[arg-type]
    assert plan is not None
    params = inspect.signature(plan).parameters
    assert "microscope" not in params
    assert params["phases"].annotation == list[dict[str, Any]]


def test_experiment_arg_rebuilds_phases_and_waits() -> None:
    phase = {
        "name": "a",
        "interval": 1,
        "n_frames": 2,
        "channels": [{"config": "x", "exposure": 5}],
    }
    out = experiment_arg([phase, {"seconds": 3}, {"type": "wait", "seconds": 1}])
    assert out == [Phase("a", interval=1, n_frames=2, channels=[Channel("x", 5)]), Wait(3), Wait(1)]
    with pytest.raises(TypeError, match="list of phases"):
        experiment_arg({"name": "a"})


def test_helpers_are_not_offered() -> None:
    assert queueable(helper, object()) is None  # type: ignore[arg-type]


def test_permissions_list_the_profile_plans(tmp_path: Path) -> None:
    path = write_permissions(tmp_path / "permissions.yaml", default_profile())
    groups = yaml.safe_load(path.read_text())["user_groups"]
    allowed = groups["primary"]["allowed_plans"]
    assert {"demo", "pulse_train", "optogenetic_plan", "count"} <= set(allowed)
    assert groups["root"]["forbidden_devices"] == [":^_:?.*"]


def test_http_address_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert http_address("60610") == ("127.0.0.1", 60610)
    assert http_address("0.0.0.0:8000") == ("0.0.0.0", 8000)
    with pytest.raises(ValueError, match="HOST:PORT"):
        http_address("host")
    with pytest.raises(SystemExit):
        main(["queue", "--help"])
    assert "--redis" in capsys.readouterr().out
