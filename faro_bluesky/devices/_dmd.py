"""`DMD`: the calibrated camera-pixel layer over an `SLM`, fed masks in camera pixels.

A subclass rather than a wrapper around an `SLM`: a DMD *is* an SLM (same core calls,
same blanking, same readings), plus a calibration. Being one device keeps its readings
named ``dmd-n_on``/``dmd-fraction`` (what readers of stored runs look up) and keeps the
warp next to the display (the closed loop's latency path: the warp on the event loop as
the pattern is sent, the display on the core's thread, decision 0069).
It works over any amplitude SLM the core drives, a DMD or an LCoS; the masks are binary,
so a lit pixel is shown at the SLM's full level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)
from pymmcore_plus import CMMCorePlus

from ._affine import as_affine, take_warped, warp_index
from ._slm import SLM, DMDPattern

__all__ = ["DMD", "CameraMask", "DMDPattern", "Mask"]


@dataclass(frozen=True, eq=False)
class CameraMask:
    """A mask in camera pixels, wrapped so a ``set`` message carries it by reference.

    ``bps.mv(dmd, CameraMask(mask))`` projects exactly what ``bps.mv(dmd, mask)`` does.
    The wrapper exists for speed: bluesky's RunEngine (1.15) puts every ``set`` message's
    arguments on a trace span through ``sanitize_np``, i.e. ``ndarray.tolist()``, even
    with tracing off: 1.3 ms for a 512x512 mask on a quiet machine, and the quarter of a
    million Python objects it allocates can start a full garbage collection (~100 ms,
    seen in the closed loop). A plain object passes through untouched.
    """

    mask: NDArray


Mask = NDArray[np.bool_] | NDArray[np.unsignedinteger] | bool | DMDPattern | CameraMask | None


class DMD(SLM):
    """A DMD/SLM: ``bps.mv(scope.dmd, mask)`` with ``mask`` in camera pixels.

    The mask (bool or unsigned integers, non-zero = light, shape = the camera's image) is
    warped into DMD pixels with `affine` (camera ``(x, y)`` -> DMD ``(x, y)``, found by
    calibration) and displayed; the warp is a lookup (for each mirror, the camera pixel it
    shows, nearest neighbour as `warp`) computed once per calibration (`index_map`).
    ``True`` lights the whole DMD and ``False``/``None`` blanks it; neither needs a
    calibration. ``DMDPattern(image)`` shows an image in DMD pixels as is (non-zero = on).
    The DMD blanks itself when the RunEngine pauses, stops or aborts (``pause``/``stop``)
    and when it is staged and unstaged. Readings and configuration are the `SLM`'s, plus
    ``calibration`` (the affine, flattened; NaN until calibrated). It is a
    `PatternedLight`, the protocol plans and validation address.

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
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.calibration, self._set_calibration = soft_signal_r_and_setter(Array1D[np.float64])
        super().__init__(core, label=label, name=name)
        self._index_map: tuple[NDArray[np.float64], NDArray[np.intp]] | None = None
        self.affine = None if affine is None else as_affine(affine)

    @property
    def camera_shape(self) -> tuple[int, int]:
        """The camera image ``(height, width)``: the shape of a mask (read at connect)."""
        return self._known().camera_shape

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
        if isinstance(value, CameraMask):
            value = value.mask
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

    def to_image(self, value: Mask) -> NDArray:
        """The DMD image (0/full level, the SLM's dtype, DMD shape) that ``value`` becomes."""
        self.check_value(value)
        if isinstance(value, CameraMask):
            value = value.mask
        if value is None or isinstance(value, bool | np.bool_):
            return np.full(self.shape, self.full if value else 0, self.dtype)
        if isinstance(value, DMDPattern):
            return np.where(np.asarray(value.image) != 0, self.full, 0).astype(self.dtype)
        if self.dtype == np.uint8:
            lit = (np.asarray(value) != 0).view(np.uint8) * np.uint8(255)
        else:
            lit = (np.asarray(value) != 0).astype(self.dtype) * self.dtype.type(self.full)
        return take_warped(self.index_map(), lit)

    def to_dmd(self, mask: Mask) -> NDArray:
        """The DMD image (0/255 on an 8-bit DMD, DMD shape) that ``mask`` becomes."""
        return self.to_image(mask)

    def _summary(self, image: NDArray) -> tuple[int, float]:
        # a DMD image is 0 or full level: its mean follows from the count (no second pass)
        n_on = int(np.count_nonzero(image))
        return n_on, n_on * self.full / image.size

    def set(self, value: Mask) -> AsyncStatus:
        """Project ``value`` (camera pixels); see the class docstring.

        Bad masks raise here, before anything is sent to the DMD. The mask is warped when
        the status starts (on the event loop) and displayed on the core's thread.
        """
        return super().set(value)

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Start a run from a dark DMD (and the warp's map ready, if calibrated)."""
        await super().stage()
        if self._affine is not None:
            await self._worker.run(self.index_map)
