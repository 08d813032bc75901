"""Plan stubs of an optogenetic experiment: wait, acquire, stimulate, visit.

They are ordinary bluesky plans, usable inside users' own plans. Each survives a pause in
the middle: with the experiment running non-rewindable (ARCHITECTURE decision 3) an
interrupted message simply returns on resume, so the stubs check the `PauseClock` after
every move and redo a move a pause may have stopped (the RunEngine stops the stage and
blanks the DMD on pause); a frame whose trigger was interrupted is waited for, never
re-triggered, so no frame is taken twice or lost and no stimulation is repeated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import bluesky.plan_stubs as bps
from bluesky import Msg
from bluesky.protocols import Readable, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, new_uid
from numpy.typing import NDArray

from ..devices import Camera, ChannelPresets, LightSetting, MaskFacet, SummaryFacet
from ..devices._dmd import DMD
from ._errors import DeviceFault
from ._tags import PauseClock, VisitTag

_WAIT_CHUNK_S = 0.5  # longest sleep between checks: bounds deferred-pause latency in waits
_STATUS_POLL_S = 0.005


def _pauses(clock: PauseClock | None) -> int:
    return clock.consume()[1] if clock is not None else 0


# The stubs below yield bluesky's messages themselves instead of calling
# ``bluesky.plan_stubs``: every stub there is wrapped by ``@plan``, which formats the
# caller's stack each time it is called (for its "never iterated" warning). Profiled: 15 %
# of the RunEngine thread per frame (docs/decisions/0022-hot-path.md). Same messages.


def _mv(obj: Any, value: Any) -> MsgGenerator[None]:
    group = new_uid()
    yield Msg("set", obj, value, group=group)
    yield Msg("wait", None, group=group)


def wait_until(
    deadline: float | Callable[[], float], *, chunk: float = _WAIT_CHUNK_S
) -> MsgGenerator[float]:
    """Wait until the wall-clock time ``deadline`` (epoch s); return how late we were (s).

    ``deadline`` may be a callable, re-evaluated every ``chunk`` seconds (a schedule that
    shifts after a pause). The wait is absolute: an early-returning sleep after a pause or a
    replay is harmless. A checkpoint per chunk lets a deferred pause land during long waits.

    Yields
    ------
    msg : Msg
        ``checkpoint`` and ``sleep`` messages.

    """
    while True:
        target = deadline() if callable(deadline) else deadline
        remaining = target - time.time()
        if remaining <= 0:
            return -remaining
        yield Msg("checkpoint")
        yield Msg("sleep", None, min(remaining, chunk))


def _status_error(exc: FailedStatus) -> BaseException:
    """The device's own error behind bluesky's FailedStatus (which prints the status)."""
    status = exc.args[0] if exc.args else None
    error = status.exception() if hasattr(status, "exception") else None
    return error or exc.__cause__ or exc


def move(
    obj: Any, value: Any, *, clock: PauseClock | None = None, retries: int = 1
) -> MsgGenerator[None]:
    """``bps.mv(obj, value)``, repeated if a pause (which stops movables) interrupted it.

    A move that fails (a stage that times out) is tried ``retries`` more times, then
    raises `DeviceFault` naming the device and its error.
    """
    failures = 0
    while True:
        before = _pauses(clock)
        try:
            yield from _mv(obj, value)
        except FailedStatus as exc:
            failures += 1
            if failures > retries:
                error = _status_error(exc)
                raise DeviceFault(getattr(obj, "name", "") or type(obj).__name__, error) from exc
            continue
        if _pauses(clock) == before:
            return


def trigger_complete(devices: Sequence[Any]) -> MsgGenerator[None]:
    """Trigger ``devices`` and wait until every trigger has really finished.

    After a hard pause the interrupted ``wait`` returns at once on resume; the triggers
    themselves go on, so their statuses are waited for: nothing is read half-done and
    nothing is triggered twice.
    """
    group = new_uid()
    statuses = []
    triggered = []
    for obj in devices:
        if isinstance(obj, Triggerable):
            triggered.append(obj)
            statuses.append((yield Msg("trigger", obj, group=group)))
    # a failure is named below, with the device and its error rather than the status object
    with contextlib.suppress(FailedStatus):
        yield Msg("wait", None, group=group)
    while not all(s.done for s in statuses if s is not None):
        yield Msg("sleep", None, _STATUS_POLL_S)
    for obj, s in zip(triggered, statuses, strict=True):
        if s is not None and not s.success:
            error = s.exception()
            raise DeviceFault(getattr(obj, "name", "") or type(obj).__name__, error) from error


def read_event(devices: Sequence[Readable], name: str) -> MsgGenerator[dict[str, Any]]:
    """One event of stream ``name`` with the readings of ``devices``; return them."""
    yield Msg("create", None, name=name)
    readings: dict[str, Any] = {}
    for obj in devices:
        readings.update((yield Msg("read", obj)))
    yield Msg("save")
    return readings


def trigger_and_read_complete(
    devices: Sequence[Readable], name: str = "primary", *, clock: PauseClock | None = None
) -> MsgGenerator[dict[str, Any]]:
    """Like ``bps.trigger_and_read`` but never reads a trigger a pause cut short.

    The frame is taken once and recorded once (see `trigger_complete`).
    """
    yield from trigger_complete(devices)
    return (yield from read_event(devices, name))


def set_channel(
    channel: ChannelPresets,
    setting: Any,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[None]:
    """Apply a channel setting, skipped if ``applied`` says it is the last one applied.

    ``applied`` is a dict the caller keeps for the duration of its plan (the experiment
    plan does), so presets, exposure and power are set only when they change; without it
    the setting is always applied.
    """
    target = LightSetting.coerce(setting)
    if applied is not None and applied.get("channel") == target:
        return
    yield from move(channel, target, clock=clock)
    if applied is not None:
        applied["channel"] = target


def acquire(
    camera: Camera,
    channel: ChannelPresets,
    settings: Sequence[Any],
    *,
    readables: Sequence[Readable] = (),
    tag: VisitTag | None = None,
    kind: str = "image",
    stream: str = "primary",
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[list[dict[str, Any]]]:
    """Take one frame per channel setting (preset, exposure, power), one event each.

    Presets are applied only when they change (see `set_channel`). ``readables`` (stage,
    visit tag, ...) are read with every frame, in stream ``stream``.

    Yields
    ------
    msg : Msg
        ``set``/``wait`` on ``channel``, then ``trigger``/``wait``/``create``/``read``/
        ``save`` per frame.

    Returns
    -------
    readings : list of dict
        The readings of each frame's event.

    """
    out = []
    for c, setting in enumerate(settings):
        yield from set_channel(channel, setting, clock=clock, applied=applied)
        if tag is not None:
            tag.frame_kind(kind, c, len(settings))
        out.append(
            (yield from trigger_and_read_complete([camera, *readables], stream, clock=clock))
        )
    return out


def fetch_mask(
    masks: MaskFacet,
    fov: int,
    t: int,
    *,
    clock: PauseClock | None = None,
    record: bool = True,
) -> MsgGenerator[NDArray | bool]:
    """Get the mask of frame ``(fov, t)`` through ``masks`` and record it (stream ``mask``).

    Reading it through a device records the mask that fires in the documents; a wait a
    pause interrupted is asked again after the resume, not recorded. A mask lighting every
    camera pixel comes back as ``True`` (whole field: every mirror on, no calibration
    needed) and an empty one as ``False``. With ``record=False`` the caller records it
    later with `record_mask` (the experiment plan does so after the stimulation has
    started, keeping the event's composition off the closed loop's critical path).
    """
    while True:
        before = _pauses(clock)
        yield from _mv(masks, (fov, t))
        yield from trigger_complete([masks])
        if not (masks.interrupted and _pauses(clock) != before):
            break  # a pause ended the wait: ask again now that we run again
    if record:
        yield from record_mask(masks)
    mask = masks.value
    if mask.all():
        return True
    if not mask.any():
        return False
    return mask


def record_mask(masks: MaskFacet) -> MsgGenerator[dict[str, Any]]:
    """Record the mask ``masks`` last fetched as an event of stream ``mask``."""
    return (yield from read_event([masks], "mask"))


def stimulate(
    camera: Camera,
    channel: ChannelPresets,
    dmd: DMD | None,
    mask: Any,
    settings: Sequence[Any],
    *,
    readables: Sequence[Readable] = (),
    tag: VisitTag | None = None,
    stream: str = "primary",
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[list[dict[str, Any]]]:
    """Project ``mask`` (camera pixels) on the DMD, expose each stim channel, blank.

    The camera records each stimulation exposure (the stim readout frame). Without a DMD
    the stim light is whole-field. A pause blanks the DMD; the pattern is projected again
    before the exposure that follows, never after it, so light is delivered once.

    Yields
    ------
    msg : Msg
        ``set`` on ``dmd``, per stim channel ``set`` on ``channel`` and a frame, then a
        ``set`` blanking the ``dmd``.

    """
    out = []
    for c, setting in enumerate(settings):
        while True:  # pattern and stim preset together: one round trip, not two
            before = _pauses(clock)
            target = LightSetting.coerce(setting)
            group = new_uid()
            if dmd is not None:
                yield Msg("set", dmd, mask, group=group)
            if applied is None or applied.get("channel") != target:
                yield Msg("set", channel, target, group=group)
            try:
                yield Msg("wait", None, group=group)
            except FailedStatus as exc:
                name = getattr(exc.args[0], "name", "") if exc.args else ""
                raise DeviceFault(name or "dmd/channel", _status_error(exc)) from exc
            if applied is not None:
                applied["channel"] = target
            if _pauses(clock) == before:
                break
        if tag is not None:
            tag.frame_kind("stim", c, len(settings))
        out.append(
            (yield from trigger_and_read_complete([camera, *readables], stream, clock=clock))
        )
    if dmd is not None:
        yield from _mv(dmd, False)
    return out


def record_summaries(summary: SummaryFacet, *, settle: float | None = None) -> MsgGenerator[int]:
    """Record every finished analysis summary as an event of stream ``analysis``.

    Never waits for analysis between visits; with ``settle`` (s) it first waits, off the
    event loop, for the analyzer to finish its work (the end of an experiment).
    """
    if settle is not None:
        yield from bps.wait_for([lambda: summary.settle(settle)])
    n = 0
    while summary.available():
        yield from trigger_complete([summary])
        yield from read_event([summary], "analysis")
        n += 1
    return n
