"""`stimulate`: project a pattern, expose the stim channels, blank the light.

A stimulation's exposure (tens of ms) is the longest time in a visit during which the
RunEngine only waits; the work of recording it happens inside that time, not after it
(decision 0066): each stim frame's settings are read while it is exposed, the caller's
``while_exposing`` records (the mask's event, the analysis summaries) run during the
first stim exposure, and the last frame's event is saved while the light blanks. Before,
these ~3 ms of messages sat between the stimulation's end and the next visit's exposure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from bluesky import Msg
from bluesky.protocols import Readable, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, new_uid

from ..devices import Camera, CameraMask, ChannelPresets, LightSetting, PatternedLight
from ..schema import FrameKind, Stream
from ._errors import DeviceFault
from ._stubs import (
    OpenEvent,
    _mv,
    _pauses,
    _settings_count,
    _status_error,
    frame_devices,
    start_trigger,
)
from ._tags import PauseClock, VisitTag

__all__ = ["stimulate"]


def stimulate(
    camera: Camera,
    channel: ChannelPresets,
    light: PatternedLight | None,
    mask: Any,
    settings: Sequence[Any],
    *,
    readables: Sequence[Readable] = (),
    tag: VisitTag | None = None,
    stream: str = Stream.PRIMARY,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
    unsaved: OpenEvent | None = None,
    while_exposing: Callable[[], MsgGenerator[Any]] | None = None,
) -> MsgGenerator[list[dict[str, Any]]]:
    """Project ``mask`` (camera pixels) with ``light``, expose each stim channel, blank.

    ``light`` is any `PatternedLight` (``scope.dmd``, ``scope.patterned_lights[key]``).
    The camera records each stimulation exposure (the stim readout frame). Without a
    patterned light the stim light is whole-field. A pause blanks the light; the pattern
    is projected again before the exposure that follows, never after it, so light is
    delivered once. ``unsaved``: the last imaging frame's event, not saved (`OpenEvent`);
    its last readings are taken while the pattern and preset go up and it is saved while
    the first stim frame exposes (first of what it records then). ``while_exposing``:
    a plan run once, while the first stim frame is exposed (it composes events only; a
    trigger failure meanwhile is left to the frame's wait). Not run if no frame started.

    Yields
    ------
    msg : Msg
        ``set`` on ``light``, per stim channel ``set`` on ``channel`` and a frame, then a
        ``set`` blanking ``light``.

    """
    out = []
    # an array travels by reference (`CameraMask`): bluesky would list it for a trace span
    pattern = CameraMask(mask) if isinstance(mask, np.ndarray) else mask
    for c, setting in enumerate(settings):
        while True:  # pattern and stim preset together: one round trip, not two
            before = _pauses(clock)
            target = LightSetting.coerce(setting)
            group = new_uid()
            if light is not None:
                yield Msg("set", light, pattern, group=group)
            if applied is None or applied.get("channel") != target:
                yield Msg("set", channel, target, group=group)
            if unsaved is not None:  # the imaging frame's readings, taken while they move
                yield from unsaved.complete(awaited=True)
            try:
                yield Msg("wait", None, group=group)
            except FailedStatus as exc:
                name = getattr(exc.args[0], "name", "") if exc.args else ""
                raise DeviceFault(name or "light/channel", _status_error(exc)) from exc
            if applied is not None:
                applied["channel"] = target
            if _pauses(clock) == before:
                break
        if tag is not None:
            tag.frame_kind(FrameKind.STIM, c, len(settings))
        last = c == len(settings) - 1
        meanwhile = None
        if c == 0:

            def meanwhile() -> MsgGenerator[Any]:
                if unsaved is not None:  # saved while the stimulation exposes
                    yield from unsaved.save(awaited=True)
                if while_exposing is not None:
                    yield from while_exposing()

        out.append(
            (
                yield from _stim_frame(
                    camera,
                    frame_devices(camera, readables),
                    stream,
                    meanwhile=meanwhile,
                    blank=light if last else None,
                )
            )
        )
    if light is not None and not settings:
        yield from _mv(light, False)
    return out


def _stim_frame(
    camera: Camera,
    devices: Sequence[Readable],
    stream: str,
    *,
    meanwhile: Callable[[], MsgGenerator[Any]] | None,
    blank: PatternedLight | None,
) -> MsgGenerator[dict[str, Any]]:
    """One stim frame: its settings read while it is exposed, then ``blank`` dark.

    Taken once and recorded once, like `trigger_and_read_complete` (a pause's resume
    waits for the frame, never triggers it again). ``meanwhile`` runs during the
    exposure. ``blank``: the light to blank after the frame; its event (whose pattern
    was read during the exposure) is saved while it blanks, then the blank is waited for.
    """
    triggered = [d for d in devices if isinstance(d, Triggerable)]
    early = _settings_count(devices, camera, triggered)
    started = yield from start_trigger(triggered)
    failed: Exception | None = None
    if meanwhile is not None:
        try:
            yield from meanwhile()
        except Exception as exc:  # raised once the frame under way is recorded
            failed = exc
    event = OpenEvent()
    readings = yield from event.begin_exposed(devices[:early], stream, started)
    group = None
    if blank is not None:  # dark at once; the event is composed while it goes dark
        group = new_uid()
        yield Msg("set", blank, False, group=group)
    readings.update((yield from event.read(devices[early:])))
    yield from event.save()
    if group is not None:
        yield Msg("wait", None, group=group)
    if failed is not None:
        raise failed
    return readings
