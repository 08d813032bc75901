"""A simulated incubator (environment controller) as an ophyd-async device, beamline style.

A live-cell run depends on the chamber as much as on the optics. Bluesky's answers are a
baseline reading (what the conditions were, in the documents) and a suspender (hold the
experiment while they are wrong). This device gives the demo and the tests something real to
read, move and suspend on. The chamber follows a first-order approach to its setpoints whose
time constant is a parameter (minutes in a demo, milliseconds in a test), and it has a door
to open. The physics is exact at any instant, so a reading never depends on how often anyone
looked. Signals follow ophyd-async's soft getter/poll pattern, so nothing runs while nobody
watches.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from bluesky.run_engine import get_bluesky_event_loop, in_bluesky_event_loop
from ophyd_async.core import (
    MovableLogic,
    SignalR,
    StandardMovable,
    StandardReadable,
    TimeoutCalculator,
    soft_signal_r_and_setter,
    soft_signal_rw,
    wait_for_value,
)
from ophyd_async.core import StandardReadableFormat as Format

#: Setpoints outside this range (°C) are refused: a typo, not an experiment.
TEMPERATURE_RANGE = (0.0, 60.0)


def _positive(field: str, value: float) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"SimIncubator: {field} must be a finite number > 0, got {value!r}")
    return float(value)


class _FirstOrder:
    """``x(t) = target + (x0 - target)·exp(-(t - t0)/tau)``, re-anchored on every change."""

    def __init__(self, value: float, t: float) -> None:
        self.x0 = self.target = value
        self.t0 = t

    def at(self, t: float, tau: float) -> float:
        return self.target + (self.x0 - self.target) * math.exp(-max(t - self.t0, 0.0) / tau)

    def rebase(self, t: float, tau: float, *, target: float | None = None, step: float = 0.0):
        self.x0 = self.at(t, tau) + step
        self.t0 = t
        if target is not None:
            self.target = target


class IncubatorModel:
    """Temperature (°C) and CO2 (%) of a chamber; no signals, no event loop.

    With the door shut both approach their setpoints with time constant ``time_constant`` (s);
    opening the door drops the air temperature by ``door_drop`` at once and lets both relax
    towards room air until it is shut. Thread-safe: a demo or a test callback may open the door
    from any thread. ``clock`` (s, monotonic) is injectable for exact unit tests.
    """

    def __init__(
        self,
        *,
        temperature: float = 37.0,
        co2: float = 5.0,
        time_constant: float = 120.0,
        door_drop: float = 3.0,
        ambient_temperature: float = 22.0,
        ambient_co2: float = 0.04,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tau = _positive("time_constant", time_constant)
        if not (math.isfinite(door_drop) and door_drop >= 0):
            raise ValueError(
                f"SimIncubator: door_drop must be a finite number >= 0, got {door_drop!r}"
            )
        self._drop = float(door_drop)
        self._ambient = (float(ambient_temperature), float(ambient_co2))
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._temperature = _FirstOrder(float(temperature), now)
        self._co2 = _FirstOrder(float(co2), now)
        self._setpoints = [float(temperature), float(co2)]
        self.door_open = False

    def temperature(self) -> float:
        """Chamber temperature now (°C)."""
        with self._lock:
            return self._temperature.at(self._clock(), self._tau)

    def co2(self) -> float:
        """Chamber CO2 now (%)."""
        with self._lock:
            return self._co2.at(self._clock(), self._tau)

    def set_setpoint(self, value: float) -> None:
        """New temperature setpoint (°C), approached from the current temperature."""
        self._retarget(0, float(value))

    def set_co2_setpoint(self, value: float) -> None:
        """New CO2 setpoint (%)."""
        self._retarget(1, float(value))

    def set_time_constant(self, value: float) -> None:
        """New time constant (s); the current values are kept, only the approach changes."""
        tau = _positive("time_constant", value)
        with self._lock:
            now = self._clock()
            for channel in (self._temperature, self._co2):
                channel.rebase(now, self._tau)
            self._tau = tau

    def open_door(self) -> None:
        """The air temperature drops by ``door_drop`` at once; both relax towards room air."""
        self._set_door(True)

    def close_door(self) -> None:
        """Regulation towards the setpoints resumes from the current values."""
        self._set_door(False)

    def _retarget(self, index: int, value: float) -> None:
        with self._lock:
            self._setpoints[index] = value
            if not self.door_open:
                channel = (self._temperature, self._co2)[index]
                channel.rebase(self._clock(), self._tau, target=value)

    def _set_door(self, open_: bool) -> None:
        with self._lock:
            if open_ == self.door_open:
                return
            self.door_open = open_
            now = self._clock()
            targets = self._ambient if open_ else self._setpoints
            self._temperature.rebase(now, self._tau, target=targets[0], step=-self._drop * open_)
            self._co2.rebase(now, self._tau, target=targets[1])


@dataclass
class _RegulationLogic(MovableLogic[float]):
    """A move is a new setpoint and a wait until the temperature is within ``tolerance``."""

    tolerance: SignalR[float]

    async def stop(self) -> None:
        """Nothing to stop: a pause or suspension ends the wait, never the regulation.

        The RunEngine stops every device a run has set when it pauses or suspends; a
        paused experiment must keep its cells warm.
        """

    async def check_move(self, new_position: float) -> None:
        """Refuse a setpoint that is not a temperature an incubator can hold."""
        low, high = TEMPERATURE_RANGE
        if not (isinstance(new_position, int | float) and low <= new_position <= high):
            raise ValueError(
                f"SimIncubator: setpoint must be between {low} and {high} °C, got {new_position!r}"
            )

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        """Set the setpoint, then wait for the readback (polled) to come within tolerance."""
        await self.setpoint.set(new_position)
        tolerance = await self.tolerance.get_value()
        await wait_for_value(
            self.readback, lambda t: abs(t - new_position) <= tolerance, timeout=timeout()
        )


class SimIncubator(StandardReadable, StandardMovable[float]):
    """A simulated stage-top incubator: temperature and CO2 regulation, and a door.

    ``bps.mv(incubator, 30)`` sets the temperature setpoint and completes when the
    temperature is within ``tolerance`` of it. As for ophyd-async's motors, the temperature
    readback reads under the device's own name (``incubator``, hinted); ``setpoint``,
    ``co2``, ``co2_setpoint`` and ``door`` are read too, ``time_constant`` and ``tolerance``
    are configuration. Subscribed readbacks are polled every ``poll_period`` s. Use it as a
    baseline device (``SupplementalData(baseline=[incubator])``) and, through
    `faro_bluesky.plans.suspend_outside`, as a suspender's signal. `open_door` and
    `close_door` inject the classic disturbance from any thread: the drop reaches
    subscribers at once, the recovery with the polls.
    """

    def __init__(
        self,
        name: str = "",
        *,
        temperature: float = 37.0,
        co2: float = 5.0,
        time_constant: float = 120.0,
        tolerance: float = 0.1,
        poll_period: float = 1.0,
        door_drop: float = 3.0,
        ambient_temperature: float = 22.0,
        ambient_co2: float = 0.04,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        poll = _positive("poll_period", poll_period)
        self.model = IncubatorModel(
            temperature=temperature,
            co2=co2,
            time_constant=time_constant,
            door_drop=door_drop,
            ambient_temperature=ambient_temperature,
            ambient_co2=ambient_co2,
            clock=clock,
        )
        m = self.model
        with self.add_children_as_readables(Format.HINTED_UNCACHED_SIGNAL):
            self.temperature, self._push_temperature = soft_signal_r_and_setter(
                float,
                m.temperature(),
                units="degC",
                precision=2,
                getter=m.temperature,
                poll_period=poll,
            )
        with self.add_children_as_readables(Format.UNCACHED_SIGNAL):
            self.setpoint = soft_signal_rw(
                float, temperature, units="degC", precision=2, setter=m.set_setpoint
            )
            self.co2, self._push_co2 = soft_signal_r_and_setter(
                float, m.co2(), units="%", precision=2, getter=m.co2, poll_period=poll
            )
            self.co2_setpoint = soft_signal_rw(
                float, co2, units="%", precision=2, setter=m.set_co2_setpoint
            )
            self.door, self._push_door = soft_signal_r_and_setter(
                bool, False, getter=lambda: m.door_open, poll_period=poll
            )
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.time_constant = soft_signal_rw(
                float, float(time_constant), units="s", setter=m.set_time_constant
            )
            self.tolerance = soft_signal_rw(float, _positive("tolerance", tolerance), units="degC")
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> _RegulationLogic:
        """How `set` regulates: see `_RegulationLogic`."""
        return _RegulationLogic(
            setpoint=self.setpoint, readback=self.temperature, tolerance=self.tolerance
        )

    def open_door(self) -> None:
        """Open the door (any thread): the temperature drops at once, then keeps falling."""
        self.model.open_door()
        self._publish()

    def close_door(self) -> None:
        """Close the door (any thread): the chamber recovers towards its setpoints."""
        self.model.close_door()
        self._publish()

    def _publish(self) -> None:
        """Hand subscribers the new state now, on the loop that owns the signals.

        ophyd-async signals are not thread-safe; their subscribers (a suspender, a monitor)
        expect updates on the bluesky event loop.
        """
        loop = get_bluesky_event_loop()
        if loop is None or not loop.is_running() or in_bluesky_event_loop():
            self._publish_now()
        else:
            loop.call_soon_threadsafe(self._publish_now)

    def _publish_now(self) -> None:
        self._push_temperature(self.model.temperature())
        self._push_co2(self.model.co2())
        self._push_door(self.model.door_open)
