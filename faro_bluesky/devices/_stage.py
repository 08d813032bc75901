"""Stage devices: XY stage (with separately scannable axes) and focus, in µm.

Both read their label and position from the core in ``connect()`` (not when built), and
their readbacks follow the core's position events, so a move made by another client of
the core (napari-micromanager, a script) shows up without a bluesky move
(`faro_bluesky.devices._core_device`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from bluesky.protocols import Movable, Stoppable
from ophyd_async.core import (
    AsyncStatus,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)
from pymmcore_plus import CMMCorePlus

from ._core_device import CoreDevice, Handler
from ._worker import CoreWorker

Limits = tuple[float, float]
_POLL_S = 0.005  # longest the core's thread is kept by one wait for a moving stage
_FINE_POLL_S = 0.0005  # how often it asks the stage meanwhile


async def wait_until_idle(worker: CoreWorker, label: str, what: str, target: object) -> None:
    """Poll ``deviceBusy(label)`` on the core thread until idle or the core's timeout.

    Polling (instead of a blocking ``waitForDevice``) keeps the core's single thread free,
    so ``stop()`` can reach the stage while it moves: each call keeps it at most
    `_POLL_S`, asking every `_FINE_POLL_S` (the stage is seen idle ~0.25 ms after it
    stops, not 2.5 ms: a visit after a move starts that much sooner).
    """
    core = worker.core
    timeout = core.getTimeoutMs() / 1000.0
    deadline = time.monotonic() + timeout
    while await worker.run(_busy_for, core, label, _POLL_S):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what} '{label}' still busy {timeout:g} s after the move to {target}: "
                "check the hardware, or raise the core timeout with core.setTimeoutMs()"
            )


def _busy_for(core: CMMCorePlus, label: str, seconds: float) -> bool:
    """On the core's thread: whether ``label`` is still busy after up to ``seconds``."""
    until = time.monotonic() + seconds
    while core.deviceBusy(label):
        if time.monotonic() >= until:
            return True
        time.sleep(_FINE_POLL_S)
    return False


def check_limits(field: str, value: float, limits: Limits | None) -> None:
    """Raise a ValueError naming ``field`` if ``value`` is outside ``limits``."""
    if limits is None:
        return
    lo, hi = limits
    if not lo <= value <= hi:
        raise ValueError(
            f"{field}={value:g} µm is outside the stage limits [{lo:g}, {hi:g}] µm: "
            "choose a target inside the limits"
        )


class StageAxis(StandardReadable, Movable[float], Stoppable):
    """One axis of an `XYStage`, movable on its own so that stock plans can scan it.

    ``bp.grid_scan([cam], stage.x, 0, 100, 3, stage.y, 0, 100, 3)`` works because each
    axis is a Movable; the other axis stays where it is.
    """

    def __init__(
        self,
        move: Callable[[float], Awaitable[None]],
        stop: Callable[[], Awaitable[None]],
        check: Callable[[float], None],
        name: str = "",
    ) -> None:
        self._move, self._stop, self._check = move, stop, check
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.readback, self._set_readback = soft_signal_r_and_setter(float, units="µm")
        super().__init__(name=name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        """Name the readback like the axis, as ophyd-async motors do (``stage-x``)."""
        super().set_name(name, child_name_separator=child_name_separator)
        self.readback.set_name(name)

    def check_value(self, value: float) -> None:
        """Raise ValueError if ``value`` (µm) is outside this axis' limits."""
        self._check(value)

    def set(self, value: float) -> AsyncStatus:
        """Move this axis to ``value`` µm; a target beyond the limits raises here."""
        self._check(float(value))
        return AsyncStatus(self._move(float(value)), name=self.name)

    async def stop(self, success: bool = True) -> None:
        """Stop the whole XY stage."""
        await self._stop()


class XYStage(CoreDevice, Movable[Sequence[float]], Stoppable):
    """The XY stage: ``bps.mv(stage, (x, y))`` in µm; readable ``x`` and ``y``.

    Targets outside ``limits`` are refused before the stage is commanded. The label
    (default: the core's XY stage) and the position are read in ``connect()``; after
    that ``x``/``y`` follow the core's ``XYStagePositionChanged`` events, so a move by
    another client shows up. Such an event reports what the stage adapter reports:
    some adapters (Micro-Manager's demo stage, the simulation) report the target when
    the move is commanded. This device's own moves end with a measured position.
    Connected with ``mock=True`` the stage never calls the core: a move sets the
    readbacks to the target at once.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        label: str | None = None,
        limits: tuple[Limits, Limits] | None = None,
        name: str = "",
    ) -> None:
        self._label = label
        self.limits = limits
        self.speed_um_s: float | None = None
        """Travel speed (µm/s) if known: plans then warn when FOV moves can't fit the
        schedule. MMCore has no speed query, so set it for your stage (the simulation does)."""
        # last commanded (x, y): axis moves started together (grid_scan) compose into one
        self._target: list[float] | None = None
        self._moves = 0  # own moves in flight: external events then leave _target alone
        with self.add_children_as_readables(StandardReadableFormat.CHILD):
            self.x = StageAxis(lambda v: self._move_axis(0, v), self._stop_stage, self._check_x)
            self.y = StageAxis(lambda v: self._move_axis(1, v), self._stop_stage, self._check_y)
        super().__init__(core, name=name)

    async def _read_core(self) -> None:
        def read() -> tuple[str, tuple[float, float]]:
            core = self._worker.core
            label = self._label or core.getXYStageDevice()
            if not label:
                raise ValueError("no XY stage: pass label= or set the core's XY stage device")
            return label, tuple(core.getXYPosition(label))

        self._label, (x, y) = await self._worker.run(read)
        self._show(x, y)
        self._target = [x, y]

    def _core_handlers(self) -> dict[str, Handler]:
        return {"XYStagePositionChanged": self._on_position_changed}

    def _on_position_changed(self, label: str, x: float, y: float) -> None:
        """Another client moved the stage (runs on the device's loop)."""
        if label != self._label:
            return
        self._show(float(x), float(y))
        if not self._moves:
            self._target = [float(x), float(y)]

    def _show(self, x: float, y: float) -> None:
        self.x._set_readback(x)
        self.y._set_readback(y)

    def _check_x(self, x: float) -> None:
        check_limits(f"{self.name or 'stage'}.x", x, self.limits[0] if self.limits else None)

    def _check_y(self, y: float) -> None:
        check_limits(f"{self.name or 'stage'}.y", y, self.limits[1] if self.limits else None)

    def check_value(self, value: Sequence[float]) -> None:
        """Raise ValueError unless ``value`` is an ``(x, y)`` pair inside the limits."""
        try:
            x, y = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.name or 'stage'} target must be an (x, y) pair in µm, got {value!r}"
            ) from None
        self._check_x(x)
        self._check_y(y)

    async def _stop_stage(self) -> None:
        self._require_connected()
        if self.mocked:
            return
        core = self._worker.core
        await self._worker.run(self._events.call_own, core.stop, self._label)
        self._target = list(await self._refresh())

    async def _refresh(self) -> tuple[float, float]:
        if self.mocked:
            return await self.x.readback.get_value(), await self.y.readback.get_value()
        core = self._worker.core
        x, y = await self._worker.run(core.getXYPosition, self._label)
        self._show(x, y)
        return x, y

    async def _move_axis(self, axis: int, value: float) -> None:
        (self._check_x, self._check_y)[axis](value)
        self._require_connected()
        if self.mocked:
            (self.x, self.y)[axis]._set_readback(value)
            return
        assert self._target is not None  # set by connect
        self._target[axis] = value
        await self._move_to(*self._target)

    async def _move_to(self, x: float, y: float) -> None:
        self._require_connected()
        if self.mocked:
            self._show(x, y)
            return
        self._target = [x, y]
        core = self._worker.core
        self._moves += 1
        closed = False
        try:
            await self._worker.run(self._events.call_own, core.setXYPosition, self._label, x, y)
            await wait_until_idle(self._worker, self._label, "XY stage", (x, y))
        except GeneratorExit:
            # closed, never finished (its loop is gone): awaiting the core now would raise
            closed = True
            raise
        finally:
            try:
                if not closed:
                    await self._refresh()
            finally:
                self._moves -= 1

    async def locate(self) -> dict[str, tuple[float, float]]:
        """Return setpoint and readback as ``(x, y)``; both are the measured position."""
        self._require_connected()
        pos = await self._refresh()
        return {"setpoint": pos, "readback": pos}

    def set(self, value: Sequence[float]) -> AsyncStatus:
        """Move to ``value = (x, y)`` in µm; a target beyond the limits raises here."""
        self.check_value(value)
        self._require_connected()
        x, y = (float(v) for v in value)
        return AsyncStatus(self._move_to(x, y), name=self.name)

    async def stop(self, success: bool = True) -> None:
        """Stop the stage where it is."""
        await self._stop_stage()


class Focus(CoreDevice, Movable[float], Stoppable):
    """The focus drive (Z), in µm.

    Label (default: the core's focus device) and position are read in ``connect()``;
    the readback then follows the core's ``stagePositionChanged`` events (see `XYStage`).
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        label: str | None = None,
        limits: Limits | None = None,
        name: str = "",
    ) -> None:
        self._label = label
        self.limits = limits
        self.speed_um_s: float | None = None
        """Travel speed (µm/s) if known: plans then warn when FOV moves can't fit the
        schedule. MMCore has no speed query, so set it for your stage (the simulation does)."""
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.readback, self._set_readback = soft_signal_r_and_setter(float, units="µm")
        super().__init__(core, name=name)

    async def _read_core(self) -> None:
        def read() -> tuple[str, float]:
            core = self._worker.core
            label = self._label or core.getFocusDevice()
            if not label:
                raise ValueError("no focus device: pass label= or set the core's focus device")
            return label, core.getPosition(label)

        self._label, z = await self._worker.run(read)
        self._set_readback(z)

    def _core_handlers(self) -> dict[str, Handler]:
        return {"stagePositionChanged": self._on_position_changed}

    def _on_position_changed(self, label: str, z: float) -> None:
        """Another client moved the focus (runs on the device's loop)."""
        if label == self._label:
            self._set_readback(float(z))

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        """Name the readback like the device (``focus``), as ophyd-async motors do."""
        super().set_name(name, child_name_separator=child_name_separator)
        self.readback.set_name(name)

    def check_value(self, value: float) -> None:
        """Raise ValueError if ``value`` (µm) is outside the limits."""
        check_limits(self.name or "focus", float(value), self.limits)

    async def _refresh(self) -> float:
        if self.mocked:
            return await self.readback.get_value()
        z = await self._worker.run(self._worker.core.getPosition, self._label)
        self._set_readback(z)
        return z

    async def locate(self) -> dict[str, float]:
        """Return setpoint and readback; both are the measured position."""
        self._require_connected()
        z = await self._refresh()
        return {"setpoint": z, "readback": z}

    def set(self, value: float) -> AsyncStatus:
        """Move focus to ``value`` µm; a target beyond the limits raises here."""
        self.check_value(value)
        self._require_connected()
        return AsyncStatus(self._move(float(value)), name=self.name)

    async def _move(self, value: float) -> None:
        self._require_connected()
        if self.mocked:
            self._set_readback(value)
            return
        core = self._worker.core
        await self._worker.run(self._events.call_own, core.setPosition, self._label, value)
        try:
            await wait_until_idle(self._worker, self._label, "focus", value)
        finally:
            await self._refresh()

    async def stop(self, success: bool = True) -> None:
        """Stop the focus drive."""
        self._require_connected()
        if self.mocked:
            return
        await self._worker.run(self._events.call_own, self._worker.core.stop, self._label)
        await self._refresh()
