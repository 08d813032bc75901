"""Pure-Python unicore devices over a `SimWorld` (no Micro-Manager needed)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from numpy.typing import DTypeLike
from pymmcore_plus.core._constants import Keyword
from pymmcore_plus.experimental.unicore import (
    Device,
    GenericDevice,
    ShutterDevice,
    SimpleCameraDevice,
    SLMDevice,
    StageDevice,
    StateDevice,
    XYStageDevice,
)

from ._world import LIGHT_FOR_FILTER, LightPath, SimWorld


def _emit(device: Device, signal: str, *args: object) -> None:
    """Report a change through ``core.events``, as Micro-Manager device adapters do.

    Adapters call the core's ``OnXYStagePositionChanged``/``OnStagePositionChanged``/
    ``OnPropertyChanged`` themselves; unicore leaves that to Python devices too, and
    other clients of the core (napari-micromanager, our devices' readbacks) rely on it.
    A device not loaded into a core (a unit test) has nobody to tell.
    """
    try:
        events = device.core.events
    except AttributeError:
        return
    getattr(events, signal).emit(*args)


class SimCamera(SimpleCameraDevice):
    """uint16 camera that renders the sample; a snap takes the exposure time."""

    def __init__(self, world: SimWorld, exposure_limits: tuple[float, float]) -> None:
        super().__init__()
        self._world = world
        self._exposure = 10.0
        self.set_property_limits(Keyword.Exposure, exposure_limits)

    def get_exposure(self) -> float:
        """Exposure in ms."""
        return self._exposure

    def set_exposure(self, exposure: float) -> None:
        """Exposure in ms."""
        self._exposure = float(exposure)

    def sensor_shape(self) -> tuple[int, int]:
        """Full frame ``(height, width)``."""
        return self._world.image_shape

    def dtype(self) -> DTypeLike:
        """16-bit pixels."""
        return np.uint16

    def snap(self, buffer: np.ndarray) -> Mapping:
        """Expose, fill ``buffer``, report the channel and stage position."""
        buffer[:] = self._world.snap(self._exposure)
        x, y = self._world.xy
        return {"SimFilter": self._world.optics.filter, "SimX": f"{x:.3f}", "SimY": f"{y:.3f}"}


class _Motion:
    """A straight move at constant speed from ``start`` to ``target``."""

    def __init__(self, start: np.ndarray) -> None:
        self.start = self.target = np.array(start, float)
        self.t0 = self.duration = 0.0

    def go(self, target: np.ndarray, speed: float, now: np.ndarray) -> None:
        self.start = np.array(now, float)
        self.target = np.array(target, float)
        self.t0 = time.monotonic()
        self.duration = float(np.linalg.norm(self.target - self.start)) / speed

    def position(self) -> np.ndarray:
        if self.duration <= 0:
            return self.target.copy()
        f = min(1.0, (time.monotonic() - self.t0) / self.duration)
        return self.start + f * (self.target - self.start)

    def busy(self) -> bool:
        return time.monotonic() - self.t0 < self.duration

    def halt(self) -> None:
        self.start = self.target = self.position()
        self.duration = 0.0


class SimXYStage(XYStageDevice):
    """XY stage with travel limits and a finite speed; can be made to hang (faults)."""

    def __init__(
        self, world: SimWorld, limits: tuple[tuple[float, float], ...], speed_um_s: float
    ) -> None:
        super().__init__()
        self._world = world
        self._limits = limits
        self._speed = speed_um_s
        self._motion = _Motion(world.xy)

    def _sync(self) -> np.ndarray:
        self._world.xy = self._motion.position()
        return self._world.xy

    def set_position_um(self, x: float, y: float) -> None:
        """Start a move to ``(x, y)`` µm; refuses targets beyond the limits."""
        for v, (lo, hi), ax in zip((x, y), self._limits, "xy", strict=True):
            if not lo <= v <= hi:
                raise ValueError(f"{ax}={v} µm outside stage limits [{lo}, {hi}]")
        self._motion.go(np.array([x, y]), self._speed, self._sync())
        # like Micro-Manager's demo XY stage: the target is reported when commanded
        _emit(self, "XYStagePositionChanged", self.get_label(), float(x), float(y))

    def get_position_um(self) -> tuple[float, float]:
        """Current position in µm."""
        x, y = self._sync()
        return float(x), float(y)

    def busy(self) -> bool:
        """True while moving, or forever when the ``stage_stuck`` fault is on."""
        self._sync()
        return self._world.faults.stage_stuck or self._motion.busy()

    def stop(self) -> None:
        """Stop where the stage is now."""
        self._motion.halt()
        x, y = self._sync()
        _emit(self, "XYStagePositionChanged", self.get_label(), float(x), float(y))

    def home(self) -> None:
        """Move to (0, 0)."""
        self.set_position_um(0.0, 0.0)

    def set_origin_x(self) -> None:
        """Not supported by the simulation."""
        raise NotImplementedError("the simulated stage has a fixed origin")

    def set_origin_y(self) -> None:
        """Not supported by the simulation."""
        raise NotImplementedError("the simulated stage has a fixed origin")


class SimZStage(StageDevice):
    """Focus drive; the image blurs away from ``world.focus_z``."""

    def __init__(self, world: SimWorld, limits: tuple[float, float]) -> None:
        super().__init__()
        self._world = world
        self._limits = limits

    def set_position_um(self, val: float) -> None:
        """Move to ``val`` µm (instantly)."""
        lo, hi = self._limits
        if not lo <= val <= hi:
            raise ValueError(f"z={val} µm outside focus limits [{lo}, {hi}]")
        self._world.z = float(val)
        _emit(self, "stagePositionChanged", self.get_label(), float(val))

    def get_position_um(self) -> float:
        """Current position in µm."""
        return self._world.z

    def set_origin(self) -> None:
        """Not supported by the simulation."""
        raise NotImplementedError("the simulated focus has a fixed origin")

    def stop(self) -> None:
        """Moves are instant: nothing to stop."""

    def home(self) -> None:
        """Move to 0."""
        self._world.z = 0.0
        _emit(self, "stagePositionChanged", self.get_label(), 0.0)


class SimFilter(StateDevice):
    """Filter cube / light path; its label selects what the camera sees.

    Its ``Label`` is sequenceable (up to `SEQUENCE_MAX` labels; unless
    ``sequenceable=False``): a loaded and started
    sequence steps on every exposure, as a light path switched by the camera's trigger
    out does, so channel switches can happen inside a camera sequence (pymmcore-plus's
    MDA engine and our bursts check `isPropertySequenceable` the same way).
    """

    SEQUENCE_MAX = 100_000

    def __init__(self, world: SimWorld, *, sequenceable: bool = True) -> None:
        self._world = world
        self._labels = list(LIGHT_FOR_FILTER)
        self._loaded: list[str] = []
        self._sequenceable = sequenceable
        super().__init__(dict(enumerate(self._labels)))

    def register_standard_properties(self) -> None:
        """State as usual; Label sequenceable (the configs of the channel group set it)."""
        super().register_standard_properties()
        if not self._sequenceable:
            return
        info = self.get_property_info(Keyword.Label.value)
        cls = type(self)
        self.register_property(
            name=Keyword.Label.value,
            default_value=info.default_value,
            allowed_values=info.allowed_values,
            getter=cls._get_current_label,
            setter=cls._set_current_label,
            sequence_max_length=self.SEQUENCE_MAX,
            sequence_loader=cls._load_labels,
            sequence_starter=cls._start_labels,
            sequence_stopper=cls._stop_labels,
        )

    def _load_labels(self, labels: list[str]) -> None:
        self._loaded = [str(label) for label in labels]

    def _start_labels(self) -> None:
        self._world.optics.sequence_step = 0
        self._world.optics.filter_sequence = list(self._loaded)

    def _stop_labels(self) -> None:
        """Stop stepping; the filter stays where the sequence left it.

        No property event, as a triggered device reports none for its steps; ``State``
        and ``Label`` read the filter itself, so the next preset really moves it.
        """
        self._world.optics.filter_sequence = []

    def get_state(self) -> int:
        """Current position."""
        return self._labels.index(self._world.optics.filter)

    def set_state(self, position: int) -> None:
        """Switch the filter."""
        self._world.optics.filter = self._labels[int(position)]


class SimLED(GenericDevice):
    """Multi-colour LED source; ``<Colour>_Level`` 0-100 is the power of each line."""

    def __init__(self, world: SimWorld) -> None:
        super().__init__()
        self._world = world
        for colour in self._world.optics.levels:
            self.register_property(
                name=f"{colour}_Level",
                default_value=self._world.optics.levels[colour],
                limits=(0.0, 100.0),
                property_type=float,
                getter=lambda _dev, c=colour: self._world.optics.levels[c],
                setter=lambda _dev, v, c=colour: self._set_level(c, v),
            )

    def _set_level(self, colour: str, value: float) -> None:
        self._world.optics.levels[colour] = float(value)
        _emit(self, "propertyChanged", self.get_label(), f"{colour}_Level", str(float(value)))


class SimShutter(ShutterDevice):
    """Shutter of the LED; the light is also on during exposures with autoshutter."""

    def __init__(self, world: SimWorld) -> None:
        super().__init__()
        self._world = world

    def get_open(self) -> bool:
        """Whether the shutter is open."""
        return self._world.optics.shutter_open

    def set_open(self, open: bool) -> None:
        """Open or close."""
        self._world.optics.shutter_open = bool(open)


class SimSLM(SLMDevice):
    """An 8-bit SLM whose displayed image shapes the cyan light on the sample.

    Without ``path``: the DMD (``world.dmd_shape``, shown through ``world.optics``); with
    one: a second SLM on its own light path (`LightPath`, an amplitude LCoS by default).
    """

    def __init__(self, world: SimWorld, path: LightPath | None = None) -> None:
        super().__init__()
        self._world = world
        self._path = path
        self._shape = world.dmd_shape if path is None else path.shape
        self._pending = np.zeros(self._shape, np.uint8)
        self._exposure = 200_000.0

    def shape(self) -> tuple[int, int]:
        """``(height, width)``: unicore 0.18.1 reads it so (its docstring says otherwise)."""
        return self._shape

    def dtype(self) -> DTypeLike:
        """8-bit pixels."""
        return np.uint8

    def set_image(self, pixels: np.ndarray) -> None:
        """Load ``pixels`` (``(height, width)``)."""
        if pixels.shape != self._shape:
            raise ValueError(f"SLM image shape {pixels.shape} != {self._shape}")
        self._pending = np.array(pixels, np.uint8, copy=True)

    def get_image(self) -> np.ndarray:
        """The loaded image."""
        return self._pending

    def display_image(self) -> None:
        """Show the loaded image."""
        if self._path is None:
            self._world.optics.dmd_image = self._pending
        else:
            self._path.image = self._pending

    def set_exposure(self, interval_ms: float) -> None:
        """How long the pattern stays on (not modelled beyond bookkeeping)."""
        self._exposure = float(interval_ms)

    def get_exposure(self) -> float:
        """How long the pattern stays on."""
        return self._exposure
