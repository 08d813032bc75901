"""The microscope: simulated by default, real hardware from a Micro-Manager configuration.

The switch is ``faro-bluesky shell --config MyScope.cfg`` or the environment variable
``FARO_MM_CONFIG=MyScope.cfg`` (the flag wins); without either, the simulated optogenetic
microscope. For real hardware, fill in `hardware` below: light-power properties, stage
limits and a known DMD calibration are specific to each microscope.
"""

from __future__ import annotations

from pathlib import Path

from faro_bluesky.cli import Setup
from faro_bluesky.devices import Microscope
from faro_bluesky.sim import sim_microscope


def microscope(setup: Setup) -> Microscope:
    """The session's microscope; the session closes it at the end."""
    if setup.mm_config is None:
        scope = sim_microscope(setup.seed, data_dir=setup.data_dir, time_scale=10.0)
    else:
        scope = hardware(setup.mm_config, setup.data_dir)
    # the name every run's start document carries (catalog.search(instrument=...))
    setup.instrument = setup.instrument or (
        "faro-sim" if setup.mm_config is None else setup.mm_config.stem
    )
    # where the stage and focus were and which light preset was set, at start and end
    setup.baseline += [scope.stage, scope.focus, scope.channel]
    setup.label("motors", scope.stage, scope.focus)
    setup.label("detectors", scope.camera)
    setup.label("light", scope.channel)
    return scope


def hardware(config: Path, data_dir: Path) -> Microscope:
    """A microscope from a Micro-Manager configuration file (pymmcore-plus's CMMCorePlus)."""
    from pymmcore_plus import CMMCorePlus

    core = CMMCorePlus()
    core.loadSystemConfiguration(str(config))
    return Microscope.from_core(
        core,
        data_dir=data_dir,
        # power_properties={"Cyan": ("Spectra", "Cyan_Level")},   # preset: (device, property)
        # stage_limits=((-5000, 5000), (-5000, 5000)),             # µm; moves beyond refused
        # focus_limits=(0, 200),                                   # µm
        # dmd_affine=np.load("dmd_affine.npy"),                    # from calibrate_dmd
    )
