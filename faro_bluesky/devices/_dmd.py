"""`DMD`: the patterned-illumination device, fed masks in camera pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from bluesky.protocols import Movable, Pausable, Stageable, Stoppable
from numpy.typing import ArrayLike, NDArray
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)
from pymmcore_plus import CMMCorePlus

from ._affine import as_affine, take_warped, warp_index
from ._worker import CoreWorker


@dataclass(frozen=True, eq=False)
class DMDPattern:
    """An image already in DMD pixels (``dmd.shape``; non-zero = mirror on).

    ``bps.mv(dmd, DMDPattern(img))`` displays it as is, without the calibration affine:
    what calibration itself and focus/alignment checks need.
    """

    image: NDArray


Mask = NDArray[np.bool_] | NDArray[np.unsignedinteger] | bool | DMDPattern | None


class DMD(StandardReadable, Movable[Any], Stoppable, Pausable, Stageable):
    """A DMD/SLM: ``bps.mv(scope.dmd, mask)`` with ``mask`` in camera pixels.

    The mask (bool or unsigned integers, non-zero = light, shape = the camera's image) is
    warped into DMD pixels with `affine` (camera ``(x, y)`` -> DMD ``(x, y)``, found by
    calibration) and displayed; the warp is a lookup (for each mirror, the camera pixel it
    shows, nearest neighbour as `warp`) computed once per calibration (`index_map`).
    ``True`` lights the whole DMD and ``False``/``None`` blanks it; neither needs a
    calibration. The DMD blanks itself when the RunEngine pauses, stops or aborts
    (``pause``/``stop``) and when it is unstaged.

    :param core: the core whose SLM device this is.
    :param label: the SLM device label; default the core's SLM device.
    :param affine: the camera->DMD calibration (3x3), or None until calibrated.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        label: str | None = None,
        affine: ArrayLike | None = None,
        name: str = "",
    ) -> None:
        self._worker = CoreWorker.for_core(core)
        self._label = label or core.getSLMDevice()
        if not self._label:
            raise ValueError("no SLM: pass label= or set the core's SLM device")

        def geometry() -> tuple[tuple[int, int], tuple[int, int]]:
            return (
                (core.getSLMHeight(self._label), core.getSLMWidth(self._label)),
                (core.getImageHeight(), core.getImageWidth()),
            )

        self.shape, self.camera_shape = self._worker.call(geometry)
        with self.add_children_as_readables():
            self.n_on, self._set_n_on = soft_signal_r_and_setter(int, 0)
            self.fraction, self._set_fraction = soft_signal_r_and_setter(float, 0.0)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.calibration, self._set_calibration = soft_signal_r_and_setter(Array1D[np.float64])
        super().__init__(name=name)
        self._index_map: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None
        self.affine = None if affine is None else as_affine(affine)

    @property
    def affine(self) -> NDArray[np.float64] | None:
        """Camera->DMD affine (3x3, ``(x, y)``), or None if not calibrated."""
        return self._affine

    @affine.setter
    def affine(self, value: ArrayLike | None) -> None:
        self._affine = None if value is None else as_affine(value)
        flat = np.full(9, np.nan) if self._affine is None else self._affine.ravel()
        self._set_calibration(flat)

    def index_map(self) -> NDArray[np.intp]:
        """For each mirror (DMD shape), the flat camera pixel it shows, ``-1`` for none.

        What `warp` with `affine` does, as a table (`warp_index`): computed on first use
        after each calibration (~6 ms at 600x800), then every mask is one gather. Keyed by
        the affine object, which the setter replaces, so a new calibration is never shown
        through an old map (even when set from another thread).
        """
        affine = self._affine
        if affine is None:
            raise ValueError("the DMD is not calibrated: run calibrate_dmd() or set dmd.affine")
        cached = self._index_map
        if cached is None or cached[0] is not affine:
            cached = (affine, warp_index(affine, self.camera_shape, self.shape))
            self._index_map = cached
        return cached[1]

    @property
    def is_calibrated(self) -> bool:
        """Whether an affine is set, so that masks can be projected."""
        return self._affine is not None

    def check_value(self, value: Mask) -> None:
        """Raise ValueError/TypeError if ``value`` can't be projected; nothing moves."""
        field = self.name or "dmd"
        if value is None or isinstance(value, bool | np.bool_):
            return
        if isinstance(value, DMDPattern):
            if np.shape(value.image) != self.shape:
                raise ValueError(
                    f"{field} DMDPattern shape {np.shape(value.image)} does not match the DMD "
                    f"{self.shape}: give the pattern in DMD pixels"
                )
            return
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"{field} mask must be a numpy array, True (all on) or False/None (blank), "
                f"got {type(value).__name__}"
            )
        if value.dtype != np.bool_ and not np.issubdtype(value.dtype, np.unsignedinteger):
            raise ValueError(
                f"{field} mask dtype {value.dtype} is not allowed: use bool or unsigned "
                "integers (non-zero = light), e.g. mask.astype(bool)"
            )
        if value.shape != self.camera_shape:
            raise ValueError(
                f"{field} mask shape {value.shape} does not match the camera image "
                f"{self.camera_shape}: give the mask in camera pixels"
            )
        if self._affine is None:
            raise ValueError(
                f"{field} is not calibrated, so a mask can't be mapped to DMD pixels: run "
                "calibrate_dmd() or set dmd.affine"
            )

    def to_dmd(self, mask: Mask) -> NDArray[np.uint8]:
        """The DMD image (0/255 uint8, DMD shape) that ``mask`` becomes."""
        self.check_value(mask)
        if mask is None or isinstance(mask, bool | np.bool_):
            return np.full(self.shape, 255 if mask else 0, np.uint8)
        if isinstance(mask, DMDPattern):
            return np.where(np.asarray(mask.image) != 0, 255, 0).astype(np.uint8)
        lit = (np.asarray(mask) != 0).view(np.uint8) * np.uint8(255)
        return take_warped(self.index_map(), lit)

    def _display(self, image: NDArray[np.uint8]) -> None:
        core = self._worker.core
        core.setSLMImage(self._label, image)
        core.displaySLMImage(self._label)

    async def _show(self, image: NDArray[np.uint8]) -> None:
        await self._worker.run(self._display, image)
        n_on = int(np.count_nonzero(image))
        self._set_n_on(n_on)
        self._set_fraction(n_on / image.size)

    def set(self, value: Mask) -> AsyncStatus:
        """Project ``value`` (camera pixels); see the class docstring.

        Bad masks raise here, before anything is sent to the DMD.
        """
        self.check_value(value)
        return self._project(value)

    @AsyncStatus.wrap
    async def _project(self, value: Mask) -> None:
        image = await self._worker.run(self.to_dmd, value)
        await self._show(image)

    @AsyncStatus.wrap
    async def blank(self) -> None:
        """Turn every mirror off."""
        await self._show(np.zeros(self.shape, np.uint8))

    async def stop(self, success: bool = True) -> None:
        """Blank: called by the RunEngine on pause, stop and abort."""
        await self.blank()

    async def pause(self) -> None:
        """Blank while the RunEngine is paused."""
        await self.blank()

    async def resume(self) -> None:
        """Nothing to restore: plans project the pattern they need next."""

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Start a run from a dark DMD (and the warp's map ready, if calibrated)."""
        await super().stage()
        await self.blank()
        if self._affine is not None:
            await self._worker.run(self.index_map)

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        """End a run with a dark DMD."""
        await self.blank()
        await super().unstage()
