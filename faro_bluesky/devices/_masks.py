"""`MaskFacet`: the stimulation mask of one (FOV, t) as a readable device.

The plan obtains every mask by triggering and reading this device (ARCHITECTURE decision 6),
so the mask that fired is in the documents and the run can be audited and replayed. The
facet asks a `MaskProvider` (the closed-loop analyzer, or a fixed mask) and waits for it
on the RunEngine's loop without blocking it; a mask that is late is replaced by a blank one
and reported as missed. A provider that also plays `MaskTiming` (the analyzer) says when
the mask's pixels and labels were ready: recorded with it, so the closed loop's latency
splits into stages from the documents alone (`faro_bluesky.storage.run_timing`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from bluesky.protocols import Movable, Stoppable
from numpy.typing import NDArray
from ophyd_async.core import (
    AsyncStatus,
    SignalR,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)

from ..schema import MaskTimes, MaskTiming
from ._exposures import EXPOSURES

MaskLike = NDArray | bool | None
_UNTIMED = MaskTimes()
_NO_SPAN = (math.nan, math.nan)


def _epoch_signal() -> tuple[SignalR[float], Callable[[float], None]]:
    """A read-only time (epoch s) the mask source reports; NaN until it does."""
    return soft_signal_r_and_setter(float, math.nan, units="s")


def _spans(spans: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    """`MaskTimes.MAX_SPANS` spans as floats, NaN-padded."""
    out = [(float(a), float(b)) for a, b in spans[: MaskTimes.MAX_SPANS]]
    return out + [_NO_SPAN] * (MaskTimes.MAX_SPANS - len(out))


@runtime_checkable
class MaskProvider(Protocol):
    """Anything that can produce the stimulation mask of a frame."""

    async def get_mask(self, fov: int, t: int) -> MaskLike:
        """Return the mask (camera pixels, non-zero = light) for FOV ``fov``, timepoint ``t``.

        ``True`` means the whole field, ``None``/``False`` no light. May wait (e.g. for the
        analysis of frame ``t``); the facet applies the timeout.
        """
        ...


@runtime_checkable
class ReadyMasks(Protocol):
    """A `MaskProvider` that can say, without waiting, that a frame's mask is decided."""

    def mask_ready(self, fov: int, t: int) -> bool:
        """True once `get_mask(fov, t)` would return (or fail) at once."""
        ...


class FixedMask:
    """A `MaskProvider` that always returns the same mask (default: the whole field)."""

    def __init__(self, mask: MaskLike = True) -> None:
        self.mask = mask

    async def get_mask(self, fov: int, t: int) -> MaskLike:
        """The fixed mask, whatever the frame."""
        return self.mask


class MaskFacet(StandardReadable, Movable[tuple[int, int]], Stoppable):
    """Readable mask of the frame selected with ``bps.mv(facet, (fov, t))``.

    Trigger waits (up to ``timeout`` s) for the provider; read gives ``mask`` (uint8, 0/1,
    camera shape), ``fov``, ``t``, ``missed`` (True when the provider was too late or
    failed: the mask is then blank), ``wait_ms`` (how long the plan waited) and the
    provider's `MaskTimes`: ``pixels_at``, ``labels_at`` (epoch s) and ``compute_ms`` (NaN
    when it missed or the provider does not say).
    """

    def __init__(
        self,
        provider: MaskProvider,
        camera_shape: tuple[int, int],
        *,
        timeout: float = 80.0,
        name: str = "mask",
    ) -> None:
        self.provider = provider
        self._timing = provider if isinstance(provider, MaskTiming) else None
        self.camera_shape = tuple(camera_shape)
        self.timeout = timeout
        self._request = (0, 0)
        self._cancel: asyncio.Event | None = None
        self.interrupted = False
        """True when the last trigger was ended by `stop` rather than by a mask or timeout."""
        self.value: NDArray[np.uint8] = np.zeros(self.camera_shape, np.uint8)
        """The mask of the last trigger (0/1, camera pixels), as ``mask`` reads it."""
        self.fetched = 0
        """Masks asked for (triggers not interrupted by a pause)."""
        self.delivered = 0
        """Masks that came in time (not missed)."""
        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.mask, self._set_mask = soft_signal_r_and_setter(
                np.ndarray, np.zeros(self.camera_shape, np.uint8)
            )
        with self.add_children_as_readables():
            self.fov, self._set_fov = soft_signal_r_and_setter(int, -1)
            self.t, self._set_t = soft_signal_r_and_setter(int, -1)
            self.missed, self._set_missed = soft_signal_r_and_setter(bool, False)
            self.wait_ms, self._set_wait_ms = soft_signal_r_and_setter(float, 0.0, units="ms")
            self.pixels_at, self._set_pixels_at = _epoch_signal()
            self.labels_at, self._set_labels_at = _epoch_signal()
            self.compute_ms, self._set_compute_ms = soft_signal_r_and_setter(
                float, math.nan, units="ms"
            )
            # a mask from the segmenter's plane: when its segmentation and its later steps
            # ran (``MaskTimes.compute_spans``)
            self.segment_start, self._set_segment_start = _epoch_signal()
            self.segment_end, self._set_segment_end = _epoch_signal()
            self.steps_start, self._set_steps_start = _epoch_signal()
            self.steps_end, self._set_steps_end = _epoch_signal()
        super().__init__(name=name)

    async def stop(self, success: bool = True) -> None:
        """End a mask wait at once (the RunEngine pauses, stops or aborts)."""
        if self._cancel is not None:
            self._cancel.set()

    def ready(self, fov: int, t: int) -> bool:
        """Whether the mask of frame (fov, t) is decided already (False: not known).

        The experiment plan then keeps that frame's event for the stimulation's exposure
        (decision 0068): a provider still computing the mask may need the event first.
        """
        provider = self.provider
        return isinstance(provider, ReadyMasks) and provider.mask_ready(fov, t)

    def set(self, value: tuple[int, int]) -> AsyncStatus:
        """Select the frame ``(fov, t)`` whose mask the next trigger fetches.

        Selected as this is called: a trigger sent right after it (without waiting for
        this status) fetches that frame's mask.
        """
        fov, t = (int(v) for v in value)
        self._request = (fov, t)
        return AsyncStatus(asyncio.sleep(0), name=self.name)

    def as_fired(self, mask: MaskLike) -> NDArray[np.bool_] | bool:
        """What the DMD is given for ``mask``: True (all on), False (dark) or a bool array.

        The same reduction `fetch_mask` applies to a fetched mask, for a mask known
        beforehand (a fixed one), so it can fire without waiting for a fetch.
        """
        arr = self._as_array(mask)
        if arr.all():
            return True
        if not arr.any():
            return False
        return arr.astype(bool)

    def _as_array(self, mask: MaskLike) -> NDArray[np.uint8]:
        if mask is None or mask is False:
            return np.zeros(self.camera_shape, np.uint8)
        if mask is True:
            return np.ones(self.camera_shape, np.uint8)
        arr = np.asarray(mask)
        if arr.shape != self.camera_shape:
            raise ValueError(
                f"mask for FOV {self._request[0]} t={self._request[1]} has shape {arr.shape}, "
                f"expected the camera's {self.camera_shape}"
            )
        return (arr != 0).astype(np.uint8)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        """Wait for the selected frame's mask; a late or failed mask becomes a blank miss.

        `stop` (the RunEngine pausing, stopping or aborting) ends the wait at once; the
        trigger then reports ``interrupted`` so the plan asks again after a resume.
        """
        fov, t = self._request
        start = time.monotonic()
        missed = False
        self.interrupted = False
        self._cancel = asyncio.Event()
        EXPOSURES.open()  # no exposure comes until the mask is here: held work goes now
        getter = asyncio.ensure_future(self.provider.get_mask(fov, t))
        cancelled = asyncio.ensure_future(self._cancel.wait())
        done, _ = await asyncio.wait(
            {getter, cancelled}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in (getter, cancelled):
            if task not in done:
                task.cancel()
        try:
            if getter not in done:
                raise TimeoutError
            mask = self._as_array(getter.result())
        except (TimeoutError, ValueError, RuntimeError, asyncio.CancelledError):
            mask, missed = np.zeros(self.camera_shape, np.uint8), True
            self.interrupted = cancelled in done
        self.value = mask
        self._set_mask(mask)
        self._set_fov(fov)
        self._set_t(t)
        self._set_missed(missed)
        if not self.interrupted:
            self.fetched += 1
            self.delivered += not missed
        self._set_wait_ms((time.monotonic() - start) * 1000.0)
        times = None if missed or self._timing is None else self._timing.mask_times(fov, t)
        times = times if times is not None else _UNTIMED
        self._set_pixels_at(times.pixels_at)
        self._set_labels_at(times.labels_at)
        self._set_compute_ms(times.compute_ms)
        (seg_start, seg_end), (steps_start, steps_end) = _spans(times.compute_spans)
        self._set_segment_start(seg_start)
        self._set_segment_end(seg_end)
        self._set_steps_start(steps_start)
        self._set_steps_end(steps_end)
