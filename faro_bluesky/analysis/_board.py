"""`MaskBoard`: stimulation masks keyed by (FOV, t), handed from analysis threads to the plan.

faro's FIFO hand-off mixed up frames when workers finished out of order, and a mask wait
could park a cancel for 80 s (faro-features I.5, I.6). Here a mask is addressed by the frame
it was computed from; the plan awaits it on the RunEngine's loop (never blocking the loop),
analysis threads resolve it with ``loop.call_soon_threadsafe``, and `cancel` releases every
waiter at once (the plan is pausing, stopping or aborting).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict

from ..devices import EXPOSURES
from ..schema import MaskTimes
from ._protocols import Mask


class MaskUnavailable(RuntimeError):
    """No mask will come for this frame (its analysis failed, or the wait was cancelled)."""


_SKIPPED = object()


class MaskBoard:
    """Thread-safe (fov, t) → mask store with awaitable reads.

    ``keep`` masks per FOV are kept (enough for the previous mode's t-1 and the current t),
    each with the `MaskTimes` it was published with (the plan records them with the mask).
    """

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._masks: dict[int, dict[int, object]] = defaultdict(dict)
        self._times: dict[int, dict[int, MaskTimes]] = defaultdict(dict)
        self._waiters: dict[tuple[int, int], list[asyncio.Future]] = defaultdict(list)

    def put(self, fov: int, t: int, mask: Mask, times: MaskTimes | None = None) -> None:
        """Publish the mask of frame (fov, t) and wake its waiters.

        ``times`` are known before any waiter wakes, so the plan reads them with the mask.
        """
        self._resolve(fov, t, mask, times)

    def skip(self, fov: int, t: int) -> None:
        """Say no mask will come for (fov, t): its waiters get `MaskUnavailable` at once."""
        self._resolve(fov, t, _SKIPPED)

    def _resolve(self, fov: int, t: int, value: object, times: MaskTimes | None = None) -> None:
        with self._lock:
            per_fov, times_of = self._masks[fov], self._times[fov]
            per_fov[t] = value
            if times is not None:
                times_of[t] = times
            else:
                times_of.pop(t, None)
            for old in sorted(per_fov)[: -self.keep]:
                del per_fov[old]
                times_of.pop(old, None)
            waiters = self._waiters.pop((fov, t), [])
        EXPOSURES.mask_out()
        for fut in waiters:
            _settle(fut, value)

    def peek(self, fov: int, t: int) -> Mask | None:
        """The mask of (fov, t) if published (None if absent or skipped); never waits.

        For inspection (tests check which masks were out when): the plan awaits `get`.
        """
        with self._lock:
            value = self._masks.get(fov, {}).get(t)
        return None if value is _SKIPPED else value  # type: ignore[return-value]

    def decided(self, fov: int, t: int) -> bool:
        """Whether the mask of (fov, t) was published or skipped (a `get` returns at once)."""
        with self._lock:
            return t in self._masks.get(fov, {})

    def times(self, fov: int, t: int) -> MaskTimes | None:
        """The `MaskTimes` the mask of (fov, t) was published with (None: none, or gone)."""
        with self._lock:
            return self._times.get(fov, {}).get(t)

    async def get(self, fov: int, t: int) -> Mask:
        """Wait for the mask of (fov, t); `MaskUnavailable` if skipped or cancelled."""
        loop = asyncio.get_running_loop()
        with self._lock:
            value = self._masks.get(fov, {}).get(t)
            if value is None:
                fut: asyncio.Future = loop.create_future()
                self._waiters[(fov, t)].append(fut)
        if value is None:
            try:
                value = await fut
            finally:
                if not fut.done() or fut.cancelled():
                    self._forget(fov, t, fut)
        if value is _SKIPPED:
            raise MaskUnavailable(f"no mask for FOV {fov} t={t}: its analysis failed")
        return value  # type: ignore[return-value]

    def _forget(self, fov: int, t: int, fut: asyncio.Future) -> None:
        with self._lock:
            waiters = self._waiters.get((fov, t), [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop((fov, t), None)

    def cancel(self, reason: str = "cancelled") -> None:
        """Release every current waiter with `MaskUnavailable` (pause, stop, abort)."""
        with self._lock:
            waiters = [f for fs in self._waiters.values() for f in fs]
            self._waiters.clear()
        for fut in waiters:
            _settle(fut, MaskUnavailable(reason))

    def reset(self) -> None:
        """Forget every mask (a new run) and release waiters."""
        self.cancel("reset")
        with self._lock:
            self._masks.clear()
            self._times.clear()

    def waiting(self) -> int:
        """How many reads are waiting now."""
        with self._lock:
            return sum(len(v) for v in self._waiters.values())


def _settle(fut: asyncio.Future, value: object) -> None:
    def _set() -> None:
        if fut.done():
            return
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        fut.get_loop().call_soon_threadsafe(_set)
