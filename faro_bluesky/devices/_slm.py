"""`SLM`: any Micro-Manager SLM (a DMD or an LCoS) as an ophyd-async device, in its pixels.

MMCore drives every spatial light modulator through one API (``setSLMImage`` +
``displaySLMImage``, ``getSLMExposure``, ``getSLMBytesPerPixel``...), whatever the
hardware: a DMD (binary mirrors) and an amplitude LCoS (grey levels) differ only in what a
pixel value does to the light. So one device covers them all: ``bps.mv(slm, image)``
shows an image given in SLM pixels. `DMD` is the calibrated camera-pixel layer over it
(masks in camera pixels, warped by the calibration affine); plans address either through
the `PatternedLight` protocol, which the bare `SLM` does not satisfy (it knows no camera).

A frame's event must not carry a 600x800 image, so the readings are a summary of what is
displayed (``n_on``, ``fraction``, ``mean``): cheap, and their timestamp is when the image
went up (the closed loop's latency is measured from it). The image itself is `image`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from bluesky.protocols import Movable, Pausable, Stageable, Stoppable
from numpy.typing import NDArray
from ophyd_async.core import (
    AsyncStatus,
    DeviceConnector,
    DeviceMock,
    NotConnectedError,
    StandardReadable,
    StandardReadableFormat,
    set_mock_value,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from pymmcore_plus import CMMCorePlus

from ._worker import CoreWorker


@dataclass(frozen=True, eq=False)
class DMDPattern:
    """An image already in SLM pixels (``slm.shape``), for any `SLM` or `DMD`.

    ``bps.mv(dmd, DMDPattern(img))`` displays it as is, without the calibration affine:
    what calibration itself and focus/alignment checks need (on a `DMD`, non-zero = on).
    Wrapped, the image travels in the ``set`` message by reference (see `CameraMask`).
    """

    image: NDArray


SLMValue = NDArray | DMDPattern | bool | None


@dataclass(frozen=True)
class _Geometry:
    """What connect reads from the core: label, shape, pixel format, the camera's shape."""

    label: str
    shape: tuple[int, int]
    bytes_per_pixel: int
    components: int
    camera_shape: tuple[int, int]


class _SLMConnector(DeviceConnector):
    """Connects the signals, then reads the SLM's geometry (real) or takes the mock's."""

    async def connect_mock(self, device: SLM, mock: DeviceMock) -> None:  # type: ignore[override]
        device._use(device._mock_geometry())
        device._mocked = True
        await super().connect_mock(device, mock)

    async def connect_real(  # type: ignore[override]
        self, device: SLM, timeout: float, force_reconnect: bool
    ) -> None:
        geometry = await asyncio.wait_for(device._worker.run(device._query_core), timeout)
        device._use(geometry)
        device._mocked = False
        await super().connect_real(device, timeout, force_reconnect)


def _pixel_dtype(bytes_per_pixel: int, components: int) -> np.dtype:
    """The dtype of the images we send: one unsigned integer per pixel.

    A colour SLM (MMCore's RGB32) is sent 8-bit monochrome images, which MMCore accepts
    for every SLM (``setSLMImage(label, unsigned char*)``).
    """
    if components > 1 or bytes_per_pixel not in (1, 2, 4):
        return np.dtype(np.uint8)
    return np.dtype(f"u{bytes_per_pixel}")


class SLM(StandardReadable, Movable[Any], Stoppable, Pausable, Stageable):
    """An MMCore SLM: ``bps.mv(slm, image)`` with ``image`` in SLM pixels.

    ``image``: ``shape`` of bool (True = full level), uint8 (255 = full level; scaled to
    a deeper device's range) or the device's own ``dtype`` (shown as is); ``True`` lights
    every pixel at full level, ``False``/``None`` blanks it. The SLM blanks itself when
    the RunEngine pauses, stops or aborts (``pause``/``stop``) and when it is staged and
    unstaged, so a run starts and ends dark.

    Readings: ``n_on`` (pixels not 0), ``fraction`` (of all pixels) and ``mean`` (mean
    pixel value, device units) of the displayed image; configuration: ``exposure`` (ms the
    SLM keeps an image up, MMCore's SLM exposure; writable: ``bps.mv(slm.exposure, 50)``).

    :param core: the core whose SLM device this is.
    :param label: the SLM device label; default the core's SLM device.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        label: str | None = None,
        mock_shape: tuple[int, int] = (600, 800),
        name: str = "",
    ) -> None:
        self._worker = CoreWorker.for_core(core)
        self._wanted_label = label
        self._label = label or ""
        self._mock_shape = (int(mock_shape[0]), int(mock_shape[1]))
        self._image: NDArray | None = None
        self._geometry: _Geometry | None = None
        self._mocked = False  # connected with mock=True: images change only the readings
        with self.add_children_as_readables():
            self.n_on, self._set_n_on = soft_signal_r_and_setter(int, 0)
            self.fraction, self._set_fraction = soft_signal_r_and_setter(float, 0.0)
            self.mean, self._set_mean = soft_signal_r_and_setter(float, 0.0)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.exposure = soft_signal_rw(
                float, units="ms", getter=self._get_exposure, setter=self._set_exposure
            )
        super().__init__(name=name, connector=_SLMConnector())

    # ---------------------------------------------------------------- geometry
    def _query_core(self) -> _Geometry:
        """The SLM's label and geometry (on the core's thread, at connect)."""
        core = self._worker.core
        slm = self._wanted_label or core.getSLMDevice()
        if not slm:
            raise ValueError("no SLM: pass label= or set the core's SLM device")
        shape = (core.getSLMHeight(slm), core.getSLMWidth(slm))
        return _Geometry(
            slm,
            shape,
            core.getSLMBytesPerPixel(slm),
            core.getSLMNumberOfComponents(slm),
            (core.getImageHeight(), core.getImageWidth()),
        )

    def _mock_geometry(self) -> _Geometry:
        return _Geometry(self._wanted_label or "SLM", self._mock_shape, 1, 1, self._mock_shape)

    def _use(self, geometry: _Geometry) -> None:
        self._geometry = geometry
        self._label = geometry.label
        self._dark = np.zeros(geometry.shape, self.dtype)

    def _known(self) -> _Geometry:
        if self._geometry is None:
            what = self.name or type(self).__name__
            raise NotConnectedError(
                f"{what} is not connected: connect it first (it reads the SLM's geometry "
                "from the core then), e.g. with init_devices() or Microscope.from_core()"
            )
        return self._geometry

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in SLM pixels."""
        return self._known().shape

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes per pixel as MMCore reports them."""
        return self._known().bytes_per_pixel

    @property
    def components(self) -> int:
        """Colour components per pixel as MMCore reports them."""
        return self._known().components

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the images the device is sent."""
        g = self._known()
        return _pixel_dtype(g.bytes_per_pixel, g.components)

    @property
    def full(self) -> int:
        """A pixel's full level in device units (255 for 8 bits)."""
        return int(np.iinfo(self.dtype).max)

    @property
    def label(self) -> str:
        """The MMCore device label of the SLM."""
        return self._label

    @property
    def bit_depth(self) -> int:
        """Bits per pixel as MMCore reports them (``getSLMBytesPerPixel``; 32 for RGB32)."""
        return self.bytes_per_pixel * 8

    @property
    def image(self) -> NDArray | None:
        """The image this device last displayed (SLM pixels), None before the first.

        The array the core was given: read it, don't modify it.
        """
        return self._image

    async def _get_exposure(self) -> float:
        return float(await self._worker.run(self._worker.core.getSLMExposure, self._label))

    async def _set_exposure(self, value: float) -> None:
        await self._worker.run(self._worker.core.setSLMExposure, self._label, float(value))

    def check_value(self, value: Any) -> None:
        """Raise ValueError/TypeError if ``value`` can't be shown; nothing moves."""
        field = self.name or "slm"
        if isinstance(value, DMDPattern):
            value = value.image
        if value is None or isinstance(value, bool | np.bool_):
            return
        if not isinstance(value, np.ndarray):
            raise TypeError(
                f"{field} image must be a numpy array, True (all on) or False/None (blank), "
                f"got {type(value).__name__}"
            )
        if value.dtype not in (np.dtype(bool), np.dtype(np.uint8), self.dtype):
            raise ValueError(
                f"{field} image dtype {value.dtype} is not allowed: use bool, uint8 (255 = "
                f"full) or the SLM's {self.dtype}, e.g. image.astype(np.uint8)"
            )
        if value.shape != self.shape:
            raise ValueError(
                f"{field} image shape {value.shape} does not match the SLM {self.shape}: "
                "give the image in SLM pixels"
            )

    def to_image(self, value: Any) -> NDArray:
        """The image (``dtype``, ``shape``) that ``value`` is displayed as."""
        self.check_value(value)
        if isinstance(value, DMDPattern):
            value = value.image
        if value is None or isinstance(value, bool | np.bool_):
            return np.full(self.shape, self.full if value else 0, self.dtype)
        if value.dtype == np.bool_:
            return value.astype(self.dtype) * self.dtype.type(self.full)
        if value.dtype == self.dtype:
            return value
        return (value.astype(np.uint64) * self.full // 255).astype(self.dtype)  # uint8 levels

    def _summary(self, image: NDArray) -> tuple[int, float]:
        """``n_on`` and ``mean`` of a displayed image (a subclass may know them cheaper)."""
        return int(np.count_nonzero(image)), float(image.mean())

    def _display(self, image: NDArray) -> tuple[int, float]:
        """Load and show ``image`` (on the core's thread); its ``n_on`` and ``mean``."""
        if not self._mocked:
            core = self._worker.core
            core.setSLMImage(self._label, image)
            core.displaySLMImage(self._label)
        self._image = image
        return self._summary(image)

    def _shown(self, n_on: int, mean: float) -> None:
        fraction = n_on / self._dark.size
        if self._mocked:  # mock signals take their values this way
            set_mock_value(self.n_on, n_on)
            set_mock_value(self.fraction, fraction)
            set_mock_value(self.mean, mean)
            return
        self._set_n_on(n_on)
        self._set_fraction(fraction)
        self._set_mean(mean)

    def set(self, value: Any) -> AsyncStatus:
        """Show ``value`` (see the class docstring).

        A bad value raises here, before anything is sent to the device.
        """
        self.check_value(value)
        return self._project(value)

    @AsyncStatus.wrap
    async def _project(self, value: Any) -> None:
        # converted (a DMD: warped) here, on the event loop, and only displayed on the
        # core's thread: a pattern sent while the camera exposes is ready by the time the
        # frame is read out, and only the display follows it there (decision 0069); the
        # readings' timestamps are when the image went up
        image = self.to_image(value)
        self._shown(*await self._worker.run(self._display, image))

    @AsyncStatus.wrap
    async def blank(self) -> None:
        """Turn every pixel off."""
        self._shown(*await self._worker.run(self._display, self._dark))

    async def stop(self, success: bool = True) -> None:
        """Blank: called by the RunEngine on pause, stop and abort."""
        await self.blank()

    async def pause(self) -> None:
        """Blank while the RunEngine is paused."""
        await self.blank()

    async def resume(self) -> None:
        """Nothing to restore: plans show the image they need next."""

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Start a run dark."""
        await super().stage()
        await self.blank()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        """End a run dark."""
        await self.blank()
        await super().unstage()
