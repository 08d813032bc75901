"""bluesky's suspenders on ophyd-async signals.

A suspender holds a run while a condition is wrong (an incubator out of its band, a flag
raised) and lets it continue by itself when the condition clears. The suspenders of bluesky
1.15 (``SuspendFloor``, ``SuspendWhenOutsideBand``, ``SuspendBoolHigh``...) use ophyd v1's
signal API: ``subscribe(cb, event_type=None, run=True)``, ``clear_sub(cb)``, ``get()``,
``name``, and they expect ``cb(value=...)``. ophyd-async's ``SignalR.subscribe`` takes one
callback and calls it with ``{name: Reading}``, so installing a suspender on it raises
``TypeError`` (and leaves a half-installed suspender behind). The fix upstream, bluesky PR
#1806 for ophyd-async issue #508, is not in the versions we pin. Until it is, `as_v1_signal`
gives the suspender the API it calls. Everything else, from trip and suspend to wait, resume
and recording the interruption, is bluesky's own machinery, unchanged
(docs/decisions/0041-ophyd-async-suspenders.md).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from bluesky.protocols import Reading
from bluesky.run_engine import (
    call_in_bluesky_event_loop,
    get_bluesky_event_loop,
    in_bluesky_event_loop,
)
from bluesky.suspenders import SuspendWhenOutsideBand
from ophyd_async.core import SignalR

logger = logging.getLogger(__name__)

V1Callback = Callable[..., Any]


class V1SignalAdapter:
    """An ophyd-async `SignalR` seen through ophyd v1's subscription API.

    Subscriptions are made, delivered and removed on the bluesky event loop, where
    ophyd-async signals live. ``subscribe`` and ``clear_sub`` may be called from any thread
    (``RE.install_suspender`` runs in the user's); from another thread they block until done,
    so a suspender installed just before ``RE(plan)`` has already seen the current value.
    Subscribers are called as ophyd v1 calls them,
    ``cb(value=, old_value=, timestamp=, sub_type="value", obj=adapter)``; one that raises is
    logged and skipped, never raised into the signal's update (which may be a plan's).
    """

    SUB_VALUE = "value"

    def __init__(self, signal: SignalR[Any]) -> None:
        if not isinstance(signal, SignalR):
            raise TypeError(
                f"as_v1_signal: expected an ophyd-async SignalR, got {type(signal).__name__}; "
                "an ophyd v1 signal can be given to a suspender as it is"
            )
        self.signal = signal
        self._subs: dict[int, V1Callback] = {}
        self._ids = itertools.count(1)
        self._last: Reading | None = None
        self._attached = False

    @property
    def name(self) -> str:
        """The signal's name (suspenders put it in their justification)."""
        return self.signal.name

    def __repr__(self) -> str:
        return f"as_v1_signal({self.name or self.signal!r})"

    def subscribe(
        self, callback: V1Callback, event_type: str | None = None, run: bool = True
    ) -> int:
        """Call ``callback(value=...)`` on every update; with ``run``, once now. Returns an id."""
        if event_type not in (None, self.SUB_VALUE):
            raise ValueError(f"{self!r}: only value subscriptions exist, not {event_type!r}")
        cid = next(self._ids)
        if in_bluesky_event_loop():
            self._add(cid, callback, run)
        else:

            async def add() -> None:
                if not self._attached:  # a polled soft signal's stored reading may be old
                    await self.signal.get_value(cached=False)
                self._add(cid, callback, run)

            call_in_bluesky_event_loop(add())
        return cid

    def clear_sub(self, callback: V1Callback, event_type: str | None = None) -> None:
        """Remove every subscription of ``callback``."""
        self._on_loop(lambda: self._remove(i for i, cb in self._subs.items() if cb == callback))

    def unsubscribe(self, cid: int) -> None:
        """Remove the subscription ``cid`` returned by `subscribe`."""
        self._on_loop(lambda: self._remove([cid]))

    def get(self) -> Any:
        """The current value: the last update while subscribed, else read from the signal.

        Suspenders call it on the event loop, inside a subscriber, to word their
        justification; there it must not block, and it does not: they are subscribed.
        """
        last = self._last
        if last is not None:
            return last["value"]
        if in_bluesky_event_loop():
            raise RuntimeError(f"{self!r} is not subscribed; in a plan use bps.rd(signal)")
        return call_in_bluesky_event_loop(self.signal.get_value())

    @property
    def value(self) -> Any:
        """Same as `get` (ophyd v1 has both)."""
        return self.get()

    def _on_loop(self, func: Callable[[], None]) -> None:
        if in_bluesky_event_loop():
            func()
        else:

            async def call() -> None:
                func()

            call_in_bluesky_event_loop(call())

    def _add(self, cid: int, callback: V1Callback, run: bool) -> None:
        if not self._attached:
            self._attached = True  # first: ophyd-async replies at once, into _last
            try:
                self.signal.subscribe_reading(self._on_reading)
            except BaseException:
                self._attached = False
                raise
        self._subs[cid] = callback
        if run and self._last is not None:
            self._deliver(callback, self._last, None)

    def _remove(self, cids: Iterable[int]) -> None:
        for cid in list(cids):
            self._subs.pop(cid, None)
        if not self._subs and self._attached:
            self.signal.clear_sub(self._on_reading)  # ends a polled signal's poll task too
            self._attached = False
            self._last = None

    def _on_reading(self, readings: dict[str, Reading]) -> None:
        if in_bluesky_event_loop():
            self._dispatch(readings)
        else:  # a backend calling from its own thread: move to the loop, in order
            self._on_loop_soon(readings)

    def _on_loop_soon(self, readings: dict[str, Reading]) -> None:
        loop = get_bluesky_event_loop()
        if loop is None or not loop.is_running():
            self._dispatch(readings)
        else:
            loop.call_soon_threadsafe(self._dispatch, readings)

    def _dispatch(self, readings: dict[str, Reading]) -> None:
        if not self._attached:  # a late update, moved here after the last clear_sub
            return
        (reading,) = readings.values()
        old, self._last = self._last, reading
        for callback in list(self._subs.values()):
            self._deliver(callback, reading, old)

    def _deliver(self, callback: V1Callback, reading: Reading, old: Reading | None) -> None:
        try:
            callback(
                value=reading["value"],
                old_value=None if old is None else old["value"],
                timestamp=reading["timestamp"],
                sub_type=self.SUB_VALUE,
                obj=self,
            )
        except Exception:
            logger.exception("%r: subscriber %r raised; skipped", self, callback)


def as_v1_signal(signal: SignalR[Any]) -> V1SignalAdapter:
    """Give an ophyd-async signal to a bluesky suspender.

    Examples
    --------
    >>> RE.install_suspender(SuspendFloor(as_v1_signal(sensor.level), 0.2))  # doctest: +SKIP

    """
    return V1SignalAdapter(signal)


def suspend_outside(
    signal: SignalR[float] | Any,
    low: float,
    high: float,
    *,
    sleep: float = 0.0,
    pre_plan: Any = None,
    post_plan: Any = None,
    tripped_message: str = "",
) -> SuspendWhenOutsideBand:
    """A suspender that holds the run while ``signal`` is outside ``(low, high)``.

    Parameters
    ----------
    signal : ophyd-async SignalR (or an ophyd v1 signal)
        Watched on the bluesky event loop; e.g. ``incubator.temperature``.
    low, high : float
        The open band in which the run may proceed.
    sleep : float
        Seconds to keep holding after the value is back in the band (let it settle).
    pre_plan, post_plan, tripped_message :
        As for any bluesky suspender: plans run before holding and before continuing.

    Returns
    -------
    SuspendWhenOutsideBand
        ``RE.install_suspender(...)`` it (or ``bpp.suspend_wrapper(plan, ...)``).

    Notes
    -----
    A suspension interrupts the current message, as a second Ctrl-C does, and the
    RunEngine records it in the ``interruptions`` stream when
    ``RE.record_interruptions = True``. `optogenetic_plan` is non-rewindable and continues
    without repeating or losing a frame (decision 0007); a rewindable plan is rewound
    to its last checkpoint and repeats what followed it.

    """
    if not (isinstance(sleep, int | float) and math.isfinite(sleep) and sleep >= 0):
        raise ValueError(f"suspend_outside: sleep must be a finite number >= 0, got {sleep!r}")
    watched = as_v1_signal(signal) if isinstance(signal, SignalR) else signal
    return SuspendWhenOutsideBand(
        watched,
        low,
        high,
        sleep=sleep,
        pre_plan=pre_plan,
        post_plan=post_plan,
        tripped_message=tripped_message,
    )
