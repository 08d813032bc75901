"""Plan stubs of an optogenetic experiment: wait, move, acquire, fetch and record masks.

They are ordinary bluesky plans, usable inside users' own plans. Each survives a pause in
the middle: with the experiment running non-rewindable (ARCHITECTURE decision 3) an
interrupted message simply returns on resume, so the stubs check the `PauseClock` after
every move and redo a move a pause may have stopped (the RunEngine stops the stage and
blanks the patterned light on pause); a frame whose trigger was interrupted is waited
for, never re-triggered, so no frame is taken twice or lost and no stimulation is
repeated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import bluesky.plan_stubs as bps
from bluesky import Msg
from bluesky.protocols import Readable, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, new_uid
from numpy.typing import NDArray

from ..devices import (
    Camera,
    ChannelPresets,
    LightSetting,
    MaskFacet,
    SummaryFacet,
)
from ..schema import FrameKind, Stream
from ._ahead import Sent, send_ahead, settle
from ._errors import DeviceFault
from ._send import _LOST, _pauses, _send
from ._tags import PauseClock, VisitTag

_WAIT_CHUNK_S = 0.5  # longest sleep between checks: bounds deferred-pause latency in waits
_STATUS_POLL_S = 0.005


# The stubs below yield bluesky's messages themselves instead of calling
# ``bluesky.plan_stubs``: every stub there is wrapped by ``@plan``, which formats the
# caller's stack each time it is called (for its "never iterated" warning). Profiled: 15 %
# of the RunEngine thread per frame (docs/decisions/0022-hot-path.md). Same messages.


def _mv(obj: Any, value: Any) -> MsgGenerator[None]:
    group = new_uid()
    yield Msg("set", obj, value, group=group)
    yield Msg("wait", None, group=group)


def wait_until(
    deadline: float | Callable[[], float],
    *,
    chunk: float = _WAIT_CHUNK_S,
    early: float = 0.0,
) -> MsgGenerator[float]:
    """Wait until the wall-clock time ``deadline`` (epoch s); return how late we were (s).

    ``deadline`` may be a callable, re-evaluated every ``chunk`` seconds (a schedule that
    shifts after a pause). The wait is absolute: an early-returning sleep after a pause or a
    replay is harmless. A checkpoint per chunk lets a deferred pause land during long waits.
    ``early`` (s) returns that much before the deadline: for a plan that hands the exact
    start to a device (`expose_at`), since the event loop's own wake-up is only
    millisecond-precise.

    Yields
    ------
    msg : Msg
        ``checkpoint`` and ``sleep`` messages.

    """
    while True:
        target = deadline() if callable(deadline) else deadline
        remaining = target - early - time.time()
        if remaining <= 0:
            return -remaining
        yield Msg("checkpoint")
        yield Msg("sleep", None, min(remaining, chunk))


def expose_at(camera: Camera, when: float) -> MsgGenerator[None]:
    """The camera's next snap starts exposing at ``when`` (epoch s), not before.

    Sent a little ahead (`wait_until` with ``early``), the trigger then reaches the
    camera's thread in time and the exposure starts on schedule to within the OS sleep's
    precision, instead of after the event loop wakes up and hands the trigger over (1-3 ms
    late, measured: docs/benchmarks.md).
    """
    yield from _mv(camera.start_at, when)


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
    yield from finish_trigger(*(yield from start_trigger(devices)))


Triggered = tuple[str, list[tuple[Any, Any]]]
"""A trigger under way: its wait group and each triggered device with its status."""


def start_trigger(devices: Sequence[Any]) -> MsgGenerator[Triggered]:
    """Trigger the triggerable ``devices`` without waiting (finish with `finish_trigger`).

    The experiment plan saves the previous frame's event while this frame is exposed.
    """
    group = new_uid()
    triggered = []
    for obj in devices:
        if isinstance(obj, Triggerable):
            triggered.append((obj, (yield Msg("trigger", obj, group=group))))
    return group, triggered


def finish_trigger(group: str, triggered: list[tuple[Any, Any]]) -> MsgGenerator[None]:
    """Wait for a `start_trigger` until every trigger has really finished (see above)."""
    # a failure is named below, with the device and its error rather than the status object
    with contextlib.suppress(FailedStatus):
        yield Msg("wait", None, group=group)
    while not all(s.done for _, s in triggered if s is not None):
        yield Msg("sleep", None, _STATUS_POLL_S)
    for obj, s in triggered:
        if s is not None and not s.success:
            error = s.exception()
            raise DeviceFault(getattr(obj, "name", "") or type(obj).__name__, error) from error


def read_event(
    devices: Sequence[Readable], name: str, *, awaited: bool = False
) -> MsgGenerator[dict[str, Any]]:
    """One event of stream ``name`` with the readings of ``devices``; return them.

    ``awaited``: composed while a trigger is under way (see `_send`).
    """
    event = OpenEvent()
    readings = yield from event.begin(devices, name, awaited=awaited)
    yield from event.save(awaited=awaited)
    return readings


class OpenEvent:
    """An event begun and not saved yet: the caller finishes it once its next step is under way.

    `acquire` reads each frame's settings into one while the frame is exposed and saves it
    while the next one is. With ``keep_open`` it leaves its last frame's event open for
    the caller: it reads the devices up to the last of the ``early`` ones (those the caller
    moves next: the stimulation's preset and pattern; put them first) and leaves the other
    readings (timing, camera; none of which the next step changes before its own trigger)
    and the save to `save`, which the caller runs while the devices move. `save` is a
    no-op once done, so every path (success, a failure, a stop) can call it.
    """

    def __init__(self, early: Sequence[Readable] = ()) -> None:
        self.early = list(early)
        self.rest: list[Readable] = []
        self.open = False

    def begin(
        self, devices: Sequence[Readable], name: str, *, awaited: bool = False
    ) -> MsgGenerator[dict[str, Any]]:
        """Open the event in stream ``name`` with the readings of ``devices``.

        ``awaited``: statuses the caller waits for next are under way (see `_send`).
        """
        yield from _send(Msg("create", None, name=name), awaited)
        self.open = True
        return (yield from self.read(devices, awaited=awaited))

    def begin_exposed(
        self,
        devices: Sequence[Readable],
        name: str,
        started: Triggered,
        meanwhile: Callable[[], MsgGenerator[Any]] | None = None,
    ) -> MsgGenerator[dict[str, Any]]:
        """`begin` while the trigger ``started`` takes the frame, then wait for it.

        The frame's settings are read while it is exposed (decision 0063); no frame (the
        trigger failed, or a stop came): no event, it is dropped. ``meanwhile``: a plan
        run after those readings, still during the exposure (it must not raise: it sends
        with ``awaited``, see `_send`).
        """
        readings = yield from self.begin(devices, name, awaited=True)
        try:
            if meanwhile is not None:
                yield from meanwhile()
            yield from finish_trigger(*started)
        except BaseException:
            yield from self.drop()
            raise
        return readings

    def read(
        self, devices: Sequence[Readable], *, awaited: bool = False
    ) -> MsgGenerator[dict[str, Any]]:
        """Add the readings of ``devices``; a failure (or a stop thrown in) drops the event.

        A stop or abort thrown in while the readings are taken (after a pause at once cut
        one short) so leaves no half-made event: the run's clean-up (a closing baseline,
        the stop) can record its own events instead of failing on the open one.
        """
        readings: dict[str, Any] = {}
        try:
            for obj in devices:
                # None: a pause or suspension cut the read short (the run is not rewound,
                # so the RunEngine answers None and the event lacks it): read it again
                while (reading := (yield from _send(Msg("read", obj), awaited))) is None:
                    pass
                if reading is not _LOST:
                    readings.update(reading)
        except BaseException:
            yield from self.drop()
            raise
        return readings

    def drop(self) -> MsgGenerator[None]:
        """Discard the event, if it is still open (its frame was not taken)."""
        if self.open:
            self.open = False
            yield Msg("drop")

    def complete(self, *, awaited: bool = False) -> MsgGenerator[None]:
        """Take the remaining readings now; `save` may come later (after another trigger)."""
        if self.open and self.rest:
            rest, self.rest = self.rest, []
            yield from self.read(rest, awaited=awaited)

    def save(self, *, awaited: bool = False) -> MsgGenerator[None]:
        """Take the remaining readings and save the event, if it is still open."""
        if not self.open:
            return
        yield from self.complete(awaited=awaited)
        self.open = False
        yield from _send(Msg("save"), awaited)


def trigger_and_read_complete(
    devices: Sequence[Readable], name: str = Stream.PRIMARY, *, clock: PauseClock | None = None
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


def begin_set_channel(
    channel: ChannelPresets,
    setting: Any,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[tuple[str, LightSetting, int] | None]:
    """Start applying a channel setting without waiting; finish with `end_set_channel`.

    The experiment plan starts the stimulation preset while the mask is still being
    computed, so the preset is in place when the mask comes and only the pattern is left
    between the mask and the stim exposure. None if the setting is already applied.
    """
    target = LightSetting.coerce(setting)
    if applied is not None and applied.get("channel") == target:
        return None
    group = new_uid()
    yield Msg("set", channel, target, group=group)
    return group, target, _pauses(clock)


def end_set_channel(
    channel: ChannelPresets,
    pending: tuple[str, LightSetting, int] | None,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[None]:
    """Wait for a `begin_set_channel`; mark it applied unless a pause came in between.

    After a pause the setting is not trusted: the next `set_channel`/`stimulate` applies
    it again.
    """
    if pending is None:
        return
    group, target, since = pending
    try:
        yield Msg("wait", None, group=group)
    except FailedStatus as exc:
        raise DeviceFault(channel.name or "channel", _status_error(exc)) from exc
    if applied is not None and _pauses(clock) == since:
        applied["channel"] = target


def acquire(
    camera: Camera,
    channel: ChannelPresets,
    settings: Sequence[Any],
    *,
    readables: Sequence[Readable] = (),
    tag: VisitTag | None = None,
    kind: str = FrameKind.IMAGE,
    stream: str = Stream.PRIMARY,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
    sequenced: bool = False,
    keep_open: OpenEvent | None = None,
    while_last: Callable[[Triggered], MsgGenerator[Any]] | None = None,
) -> MsgGenerator[list[dict[str, Any]]]:
    """Take one frame per channel setting (preset, exposure, power), one event each.

    Presets are applied only when they change (see `set_channel`). ``readables`` (stage,
    visit tag, ...) are read with every frame, in stream ``stream``. ``sequenced``: the
    frames come from a camera sequence that switches the presets itself
    (`Camera.sequence_channels`); the channel device only records each frame's preset.

    Each frame's event reads the frame's settings (``readables`` up to the camera's
    timing or anything triggered) while the frame is exposed, the camera once it is
    taken, and is saved while the next frame is exposed: the RunEngine's work overlaps the
    exposures (decision 0063). With ``keep_open`` (an `OpenEvent`) the last one is left
    open in it for the caller to save once it has started what comes next (the experiment
    plan: the stimulation's preset and pattern). ``while_last(started)``: a plan run
    while the last frame is exposed, after its settings are read (`OpenEvent.begin_exposed`).

    Yields
    ------
    msg : Msg
        Per frame: ``set``/``wait`` on ``channel``; ``trigger``; the previous frame's
        ``save``; ``create`` and the settings' ``read``; ``wait``; the camera's ``read``.

    Returns
    -------
    readings : list of dict
        The readings of each frame's event.

    """
    out: list[dict[str, Any]] = []
    devices = frame_devices(camera, readables)
    triggered = [d for d in devices if isinstance(d, Triggerable)]  # (a slow check: once)
    # A frame's settings (preset, pattern, stage, tags: what its trigger does not change)
    # are read while it is exposed; the camera and its timing once it is taken. A camera
    # sequence switches the preset itself: the channel records it after the frame.
    early = 0 if sequenced else _settings_count(devices, camera, triggered)
    previous = OpenEvent()  # the previous frame's event: readings taken, save due
    try:
        sent: Sent | None = None  # this frame's preset, sent while the last exposed
        for c, setting in enumerate(settings):
            if not sequenced and not (yield from settle(sent, clock=clock, applied=applied)):
                # (after the previous frame's readings: they keep its preset)
                yield from set_channel(channel, setting, clock=clock, applied=applied)
            if tag is not None:
                tag.frame_kind(kind, c, len(settings))
            started = yield from start_trigger(triggered)
            # composed while this frame is exposed, off its critical path
            yield from previous.save(awaited=True)
            last = keep_open is not None and c == len(settings) - 1
            event = keep_open if last else OpenEvent()
            following = settings[c + 1] if c + 1 < len(settings) else None

            def meanwhile(started: Triggered = started, following: Any = following) -> MsgGenerator:
                # after this frame's settings are read, still while it is exposed
                nonlocal sent
                sent = None
                if following is not None and not sequenced:
                    target = LightSetting.coerce(following)
                    sent = yield from send_ahead(
                        camera, channel, "channel", target, clock=clock, applied=applied
                    )
                if following is None and while_last is not None:
                    yield from while_last(started)

            # (no frame, no event; the previous one is saved)
            readings = yield from event.begin_exposed(devices[:early], stream, started, meanwhile)
            if sequenced:
                # a camera sequence switched the preset; the channel records it once the
                # frame is taken (a pause during the trigger leaves no older reading)
                yield from move(channel, replace(LightSetting.coerce(setting), sequenced=True))
            cut = len(devices)
            if last:  # up to what the caller moves next now; the rest when it saves
                # (in the usual order: a stream's events must list their keys alike, or
                # tiled refuses to append them to the stream's table)
                cut = max(
                    early,
                    1 + max(i for i, d in enumerate(devices) if any(d is e for e in event.early)),
                )
            readings.update((yield from event.read(devices[early:cut])))
            event.rest = devices[cut:]
            out.append(readings)
            previous = event
    except Exception:
        yield from previous.save()  # a frame taken is never lost: its event goes out first
        raise
    if keep_open is None:
        yield from previous.save()
    return out


def frame_devices(camera: Camera, readables: Sequence[Readable]) -> list[Readable]:
    """What a frame's event reads, in order: the ``readables``, then the camera.

    The same order for every frame of a stream (tiled appends events to one table).
    """
    return [*readables, camera]


def _settings_count(devices: Sequence[Any], camera: Camera, triggered: Sequence[Any]) -> int:
    """How many leading ``devices`` a trigger leaves as they are (readable while exposing).

    ``triggered``: those of ``devices`` that are triggered (the camera and any other).
    """
    late = [camera, camera.timing, *triggered]
    for i, obj in enumerate(devices):
        if any(obj is x for x in late):
            return i
    return len(devices)


def fetch_mask(
    masks: MaskFacet,
    fov: int,
    t: int,
    *,
    clock: PauseClock | None = None,
    record: bool = True,
    started: tuple[Triggered, int] | None = None,
) -> MsgGenerator[NDArray | bool]:
    """Get the mask of frame ``(fov, t)`` through ``masks`` and record it (stream ``mask``).

    Reading it through a device records the mask that fires in the documents; a wait a
    pause interrupted is asked again after the resume, not recorded. A mask lighting every
    camera pixel comes back as ``True`` (whole field: every mirror on, no calibration
    needed) and an empty one as ``False``. With ``record=False`` the caller records it
    later with `record_mask` (the experiment plan does so after the stimulation has
    started, keeping the event's composition off the closed loop's critical path).
    ``started``: the facet was set to the frame and triggered already (`start_fetch`),
    with the pause count then.
    """
    while True:
        if started is None:
            before = _pauses(clock)
            triggered = yield from start_fetch(masks, fov, t)
        else:
            (triggered, before), started = started, None
        yield from finish_trigger(*triggered)
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


def start_fetch(
    masks: MaskFacet, fov: int, t: int, *, awaited: bool = False
) -> MsgGenerator[Triggered]:
    """Select frame ``(fov, t)`` on ``masks`` and trigger it; finish with `finish_trigger`.

    The facet selects the frame as it is set: its trigger follows at once, and one wait
    covers both (a round trip less on the closed loop's path). ``awaited``: sent while
    another trigger is under way (see `_send`; a lost status is then None).
    """
    group = new_uid()
    yield from _send(Msg("set", masks, (fov, t), group=group), awaited)
    status = yield from _send(Msg("trigger", masks, group=group), awaited)
    return group, [(masks, None if status is _LOST else status)]


def record_mask(masks: MaskFacet, *, awaited: bool = False) -> MsgGenerator[dict[str, Any]]:
    """Record the mask ``masks`` last fetched as an event of stream ``mask``.

    ``awaited``: recorded while a trigger is under way (the stimulation's exposure).
    """
    return (yield from read_event([masks], Stream.MASK, awaited=awaited))


def record_summaries(
    summary: SummaryFacet, *, settle: float | None = None, awaited: bool = False
) -> MsgGenerator[int]:
    """Record every finished analysis summary as an event of stream ``analysis``.

    Never waits for analysis between visits; with ``settle`` (s) it first waits, off the
    event loop, for the analyzer to finish its work (the end of an experiment).
    ``awaited``: recorded while a trigger is under way (a stimulation's exposure).
    """
    if settle is not None:
        yield from bps.wait_for([lambda: summary.settle(settle)])
    n = 0
    while summary.available():
        yield from trigger_complete([summary])
        yield from read_event([summary], Stream.ANALYSIS, awaited=awaited)
        n += 1
    return n
