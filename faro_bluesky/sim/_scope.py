"""Building the simulated microscope: a `UniMMCore` of sim devices and its device tree."""

from __future__ import annotations

import atexit
import logging
import tempfile
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pymmcore_plus.experimental.unicore import UniMMCore

from ..devices import DEFAULT_DATA_DIR, Microscope
from ..devices._exit import quiet_exit, stop_event_loops  # the exit hook: see issue 13 point 6
from ..devices._microscope import close_open_microscopes
from ._sample import SampleParams, SimSample
from ._world import SimWorld

logger = logging.getLogger(__name__)

CHANNEL_GROUP = "Channel"
SECOND_SLM = "SLM2"
"""MMCore label of the second SLM (``sim_microscope(second_slm=True)``)."""
SECOND_SLM_KEY = "slm2"
"""Its key in ``scope.patterned_lights`` and its device name."""
#: preset -> (device, property) of its light level
POWER_PROPERTIES = {
    "BF": ("LED", "White_Level"),
    "miRFP": ("LED", "Red_Level"),
    "ERKKTR": ("LED", "Green_Level"),
    "Cyan": ("LED", "Cyan_Level"),
}


@dataclass(frozen=True)
class SimOptions:
    """Hardware options of the simulated microscope (µm, ms, pixels)."""

    image_shape: tuple[int, int] = (512, 512)
    """Camera image ``(height, width)``."""
    pixel_size_um: float = 0.65
    """Size of a camera pixel in the sample (a 20x objective on a 6.5 µm sensor)."""
    exposure_limits_ms: tuple[float, float] = (0.1, 5000.0)
    """Camera exposure limits."""
    dmd_shape: tuple[int, int] = (600, 800)
    """DMD ``(height, width)`` in mirrors."""
    dmd_rotation_deg: float = 4.0
    """Misalignment of the DMD relative to the camera: rotation..."""
    dmd_scale: float = 1.05
    """... scale (DMD pixels per camera pixel) ..."""
    dmd_shift: tuple[float, float] = (30.0, -18.0)
    """... and shift ``(x, y)`` in DMD pixels of the camera centre."""
    stage_limits: tuple[tuple[float, float], tuple[float, float]] = (
        (-20_000.0, 20_000.0),
        (-20_000.0, 20_000.0),
    )
    """XY travel ``((xmin, xmax), (ymin, ymax))``."""
    stage_speed_um_s: float = 5000.0
    """XY speed."""
    focus_limits: tuple[float, float] = (-500.0, 500.0)
    """Focus travel."""
    sequenceable_filter: bool = True
    """The filter's ``Label`` switches on the camera's trigger (a sequenceable property):
    bursts then switch channels inside the camera sequence. False: a filter that only
    moves on command, so several channels go step by step."""
    second_slm: bool = False
    """Load a second SLM (label ``SLM2``, an 8-bit amplitude LCoS) on a second arm of the
    Cyan light path: ``scope.patterned_lights["slm2"]``."""
    second_slm_shape: tuple[int, int] = (480, 640)
    """Second SLM ``(height, width)`` in pixels."""
    second_slm_rotation_deg: float = -2.5
    """Its misalignment relative to the camera: rotation..."""
    second_slm_scale: float = 0.8
    """... scale (SLM pixels per camera pixel) ..."""
    second_slm_shift: tuple[float, float] = (-12.0, 15.0)
    """... and shift ``(x, y)`` in SLM pixels of the camera centre."""


_CORES: weakref.WeakSet[UniMMCore] = weakref.WeakSet()


def _unload_all() -> None:
    """Drop the Python devices of every sim core before the interpreter exits.

    A UniMMCore still holding Python devices at interpreter exit aborts the process
    (SIGABRT, exit code 134); see also the note on the garbage collector below.
    """
    stop_event_loops()  # no device call may start while the cores are dismantled
    close_open_microscopes()  # no device of ours follows a core that is dismantled
    for core in list(_CORES):
        try:
            core.unloadAllDevices()
        except Exception:  # pragma: no cover - best effort at exit
            logger.debug("could not unload sim core", exc_info=True)
    _CORES.clear()
    quiet_exit()  # see faro_bluesky/devices/_exit.py


atexit.register(_unload_all)


def sim_core(world: SimWorld, options: SimOptions) -> UniMMCore:
    """A `UniMMCore` with the sim devices loaded, presets defined, autoshutter on."""
    from ._devices import (
        SimCamera,
        SimFilter,
        SimLED,
        SimShutter,
        SimSLM,
        SimXYStage,
        SimZStage,
    )

    core = UniMMCore(mm_path=tempfile.gettempdir())
    # No MMCore log file for a simulation: each core holds the file open until it is
    # destroyed, which a microscope's close leaves to the core's owner (hundreds of sim
    # microscopes in one process ran out of file descriptors). Python logging still works.
    core.setPrimaryLogFile("")
    core.loadPyDevice("Camera", SimCamera(world, options.exposure_limits_ms))
    core.loadPyDevice("XY", SimXYStage(world, options.stage_limits, options.stage_speed_um_s))
    core.loadPyDevice("Z", SimZStage(world, options.focus_limits))
    core.loadPyDevice("Filter", SimFilter(world, sequenceable=options.sequenceable_filter))
    core.loadPyDevice("LED", SimLED(world))
    core.loadPyDevice("Shutter", SimShutter(world))
    core.loadPyDevice("DMD", SimSLM(world))
    if options.second_slm:
        path = world.add_light_path(
            tuple(options.second_slm_shape),
            rotation_deg=options.second_slm_rotation_deg,
            scale=options.second_slm_scale,
            shift=tuple(options.second_slm_shift),
        )
        core.loadPyDevice(SECOND_SLM, SimSLM(world, path))
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setShutterDevice("Shutter")
    core.setSLMDevice("DMD")
    for preset in POWER_PROPERTIES:
        core.defineConfig(CHANNEL_GROUP, preset, "Filter", "Label", preset)
    core.setChannelGroup(CHANNEL_GROUP)
    core.setConfig(CHANNEL_GROUP, "BF")
    core.setAutoShutter(True)
    world.autoshutter = core.getAutoShutter
    _CORES.add(core)
    return core


@dataclass
class SimHandle:
    """Access to the simulation behind a sim `Microscope` (``scope.sim``)."""

    world: SimWorld
    options: SimOptions

    @property
    def sample(self) -> SimSample:
        """The cells and their activity."""
        return self.world.sample

    @property
    def faults(self) -> Any:
        """Faults to inject (`faro_bluesky.sim.Faults`)."""
        return self.world.faults

    @property
    def true_affine(self) -> Any:
        """The real camera->DMD affine of the misaligned projector."""
        return self.world.true_affine

    @property
    def true_affines(self) -> dict[str, Any]:
        """The real camera->SLM affine of every patterned light, by its key."""
        out = {"dmd": self.world.true_affine}
        if self.world.light_paths:
            out[SECOND_SLM_KEY] = self.world.light_paths[0].true_affine
        return out

    def ground_truth(self) -> Any:
        """Cells in the current field of view (`faro_bluesky.sim.GroundTruth`)."""
        return self.world.ground_truth()


def sim_microscope(
    seed: int = 0,
    *,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    dmd_calibrated: bool = False,
    time_scale: float = 1.0,
    connect: bool = True,
    name: str = "",
    **options: Any,
) -> Microscope:
    """A connected `Microscope` over a simulated optogenetic microscope.

    :param seed: the same seed gives the same cells and noise.
    :param data_dir: where the camera writes its zarr stores.
    :param dmd_calibrated: start with the true calibration of the DMD (and of the second
        SLM): no calibrate_dmd needed.
    :param time_scale: sample seconds per clock second (cells respond faster).
    :param connect: connect on the RunEngine's loop (create the RunEngine first).
    :param name: prefix of the device names (default none).
    :param options: any `SimOptions` field, or any `SampleParams` field.
    """
    sim_keys = {f.name for f in fields(SimOptions)}
    sample_keys = {f.name for f in fields(SampleParams)}
    unknown = set(options) - sim_keys - sample_keys
    if unknown:
        raise TypeError(
            f"sim_microscope() got unknown option(s) {sorted(unknown)}; "
            f"known: {sorted(sim_keys | sample_keys)}"
        )
    opts = SimOptions(**{k: v for k, v in options.items() if k in sim_keys})
    params = SampleParams(
        time_scale=time_scale, **{k: v for k, v in options.items() if k in sample_keys}
    )
    world = SimWorld(
        SimSample(seed, params),
        image_shape=tuple(opts.image_shape),
        pixel_size_um=opts.pixel_size_um,
        dmd_shape=tuple(opts.dmd_shape),
        dmd_rotation_deg=opts.dmd_rotation_deg,
        dmd_scale=opts.dmd_scale,
        dmd_shift=tuple(opts.dmd_shift),
        seed=seed,
    )
    core = sim_core(world, opts)
    scope = Microscope.from_core(
        core,
        data_dir=data_dir,
        power_properties=POWER_PROPERTIES,
        stage_limits=opts.stage_limits,
        focus_limits=opts.focus_limits,
        dmd_affine=world.true_affine if dmd_calibrated else None,
        pixel_size_um=opts.pixel_size_um,
        slms={SECOND_SLM_KEY: SECOND_SLM} if opts.second_slm else None,
        name=name,
        connect=connect,
    )
    scope.sim = SimHandle(world, opts)
    if opts.second_slm and dmd_calibrated:
        scope.patterned_lights[SECOND_SLM_KEY].affine = world.light_paths[0].true_affine
    scope.stage.speed_um_s = opts.stage_speed_um_s
    return scope
