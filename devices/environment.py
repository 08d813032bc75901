"""Instruments beside the microscope, beamline style: here a stage-top incubator.

The incubator is the simulated one (`faro_bluesky.sim.SimIncubator`); for a real one, build
its ophyd-async (or ophyd) device here instead. Its readings go into every run's baseline,
and a suspender holds a run while the chamber is outside 37 ± 1 °C: the run continues by
itself 5 s after the temperature is back.
"""

from __future__ import annotations

from ophyd_async.core import init_devices

from faro_bluesky.cli import Setup
from faro_bluesky.plans import suspend_outside
from faro_bluesky.sim import SimIncubator


def incubator(setup: Setup) -> SimIncubator:
    """The incubator: connected, read as baseline, labelled for %ct, watched by a suspender."""
    with init_devices():
        incubator = SimIncubator()
    setup.baseline.append(incubator)
    setup.label("detectors", incubator)
    setup.suspenders.append(
        suspend_outside(
            incubator.temperature,
            36.0,
            38.0,
            sleep=5.0,
            tripped_message="the incubator is outside 37 ± 1 °C",
        )
    )
    return incubator
