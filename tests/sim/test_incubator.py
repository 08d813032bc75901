"""The simulated incubator: exact first-order physics, and an ordinary ophyd-async device."""

from __future__ import annotations

import math

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky.preprocessors import SupplementalData
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from ophyd_async.core import init_devices

from faro_bluesky.sim import SimIncubator
from faro_bluesky.sim._incubator import IncubatorModel


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_model_is_an_exact_first_order_approach():
    clock = Clock()
    m = IncubatorModel(temperature=37.0, time_constant=10.0, door_drop=3.0, clock=clock)
    m.set_setpoint(30.0)
    clock.t += 10.0  # one time constant: 1 - 1/e of the way
    assert m.temperature() == pytest.approx(30.0 + 7.0 / math.e)
    m.open_door()  # a step of -3 °C, then towards room air (22 °C)
    at_open = m.temperature()
    assert at_open == pytest.approx(30.0 + 7.0 / math.e - 3.0)
    assert m.door_open
    m.set_setpoint(37.0)  # the door stays open: the new setpoint waits for it
    clock.t += 10.0
    assert m.temperature() == pytest.approx(22.0 + (at_open - 22.0) / math.e)
    m.close_door()
    closed_at = m.temperature()
    clock.t += 1e4
    assert m.temperature() == pytest.approx(37.0) and closed_at < 30.0
    assert m.co2() == pytest.approx(5.0)


def test_model_refuses_bad_numbers():
    with pytest.raises(ValueError, match="time_constant"):
        IncubatorModel(time_constant=0)
    with pytest.raises(ValueError, match="poll_period"):
        SimIncubator(poll_period=float("nan"))
    with pytest.raises(ValueError, match="tolerance"):
        SimIncubator(tolerance=-1.0)


@pytest.fixture
def incubator(RE):
    with init_devices():
        incubator = SimIncubator(time_constant=0.05, poll_period=0.01)
    return incubator


def test_reads_describes_and_hints_like_a_beamline_device(incubator):
    reading = call_in_bluesky_event_loop(incubator.read())
    described = call_in_bluesky_event_loop(incubator.describe())
    assert (
        set(reading)
        == set(described)
        == {
            "incubator",  # the temperature, under the device's name as a motor's readback
            "incubator-setpoint",
            "incubator-co2",
            "incubator-co2_setpoint",
            "incubator-door",
        }
    )
    assert reading["incubator"]["value"] == pytest.approx(37.0)
    assert described["incubator"]["units"] == "degC"
    assert incubator.hints == {"fields": ["incubator"]}
    config = call_in_bluesky_event_loop(incubator.read_configuration())
    assert config["incubator-time_constant"]["value"] == 0.05


def test_mv_completes_within_tolerance_and_baseline_records_it(RE, docs, incubator):
    result = RE(bps.mv(incubator, 33.0))
    assert result.exit_status == "success"
    location = call_in_bluesky_event_loop(incubator.locate())
    assert location["setpoint"] == 33.0
    assert abs(location["readback"] - 33.0) <= 0.1
    with pytest.raises(FailedStatus, match="setpoint must be between"):
        RE(bps.mv(incubator, 370.0))  # a typo, refused before the setpoint changes
    assert call_in_bluesky_event_loop(incubator.setpoint.get_value()) == 33.0

    RE.preprocessors.append(SupplementalData(baseline=[incubator]))
    RE(bp.count([incubator.co2]))
    descriptors = {d["uid"]: d["name"] for d in docs.of("descriptor")}
    baseline = [e for e in docs.of("event") if descriptors[e["descriptor"]] == "baseline"]
    assert len(baseline) == 2  # start and end of the run
    assert all(abs(e["data"]["incubator"] - 33.0) <= 0.1 for e in baseline)
    assert all(e["data"]["incubator-setpoint"] == 33.0 for e in baseline)


def test_door_drop_reaches_a_subscriber_at_once(RE):
    with init_devices():
        incubator = SimIncubator(poll_period=1e6)  # no poll: only the door's own update
    seen: list[float] = []

    def on_reading(reading) -> None:
        seen.append(reading["incubator"]["value"])

    async def watch(subscribe: bool) -> None:
        if subscribe:
            incubator.temperature.subscribe_reading(on_reading)
        else:
            incubator.temperature.clear_sub(on_reading)

    call_in_bluesky_event_loop(watch(True))
    assert seen == [pytest.approx(37.0)]
    incubator.open_door()  # from this (non-loop) thread: handed to the loop, in order
    assert call_in_bluesky_event_loop(incubator.door.get_value()) is True
    assert len(seen) == 2 and seen[1] <= 37.0 - 3.0  # the step, without waiting for a poll
    incubator.close_door()
    call_in_bluesky_event_loop(watch(False))
    assert len(seen) == 3 and seen[2] <= seen[1]  # recovery starts from where it was
