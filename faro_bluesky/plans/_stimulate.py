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
from dataclasses import dataclass
from typing import Any

import numpy as np
from bluesky import Msg
from bluesky.protocols import Readable, Triggerable
from bluesky.utils import FailedStatus, MsgGenerator, new_uid

from ..devices import (
    Camera,
    CameraMask,
    ChannelPresets,
    LightSetting,
    MaskFacet,
    PatternedLight,
)
from ..schema import FrameKind, Stream
from ._ahead import NextVisit, send_ahead, settle, wait_first
from ._errors import DeviceFault
from ._send import _pauses, _send
from ._stubs import (
    OpenEvent,
    Triggered,
    _mv,
    _settings_count,
    _status_error,
    finish_trigger,
    frame_devices,
    start_fetch,
    start_trigger,
)
from ._tags import PauseClock, VisitTag

__all__ = ["Staged", "stage_stimulation", "stimulate"]


@dataclass
class Staged:
    """A stimulation's preset (and pattern) sent during the last imaging exposure.

    Sent while that frame was exposed to devices that run on the camera's core thread
    after the snap (`Camera.after_exposure`), so they are applied the moment the frame
    is read out (decision 0069). `stimulate` then only waits for them.
    """

    group: str
    """The group of the preset's (and pattern's) ``set``."""
    pauses: int
    """The pause count when they were sent: a pause since undoes them (blank, re-set)."""
    pattern: Any = None
    """The pattern sent to the light (None: not sent, the mask was not out in time)."""
    fetch: Triggered | None = None
    """The mask facet's trigger under way (`start_fetch`), for `fetch_mask`."""


def stage_stimulation(
    camera: Camera,
    channel: ChannelPresets,
    light: PatternedLight | None,
    setting: Any,
    exposing: Triggered,
    *,
    masks: MaskFacet | None = None,
    frame: tuple[int, int] = (0, 0),
    pattern: Any = None,
    clock: PauseClock | None = None,
) -> MsgGenerator[Staged | None]:
    """During the last imaging exposure, send the stimulation's preset and pattern.

    ``exposing``: that frame's trigger (`start_trigger`). ``pattern``: the mask when it
    is known beforehand (whole field, a fixed mask); otherwise ``masks`` is asked for the
    mask of ``frame`` (fov, t) now, and the pattern is sent if it comes before the
    exposure ends. None (nothing sent) unless the camera's thread runs the channel's and
    the light's calls after its exposure. Sends only (``awaited``: `_send`); never raises.
    """
    if not camera.after_exposure(channel) or not (light is None or camera.after_exposure(light)):
        return None
    staged = Staged(new_uid(), _pauses(clock))
    yield from _send(Msg("set", channel, LightSetting.coerce(setting), group=staged.group), True)
    if pattern is None and masks is not None:
        staged.fetch = yield from start_fetch(masks, *frame, awaited=True)
        cam = [s for obj, s in exposing[1] if obj is camera and s is not None]
        if cam:  # (without the frame's status, waiting for the mask alone could deadlock)
            yield from wait_first([*(s for _, s in staged.fetch[1]), *cam])
        facet = staged.fetch[1][0][1]
        if facet is not None and facet.done and facet.success and not masks.interrupted:
            pattern = masks.as_fired(masks.value)
    if pattern is not None and _pauses(clock) == staged.pauses:
        staged.pattern = True if light is None else pattern
        if light is not None:
            shown = CameraMask(pattern) if isinstance(pattern, np.ndarray) else pattern
            yield from _send(Msg("set", light, shown, group=staged.group), True)
    return staged


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
    staged: Staged | None = None,
    then: NextVisit | None = None,
    stage: Any = None,
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
    ``staged``: the first stim channel's preset (and ``mask``'s pattern, if its
    ``pattern`` is set) were sent already (`stage_stimulation`); only waited for, unless
    a pause came since. ``then``: where the next visit starts (``stage`` to its position,
    its first preset), sent with the blank during the last stim frame's exposure when the
    camera's thread applies them after it.
    """
    out = []
    # an array travels by reference (`CameraMask`): bluesky would list it for a trace span
    pattern = CameraMask(mask) if isinstance(mask, np.ndarray) else mask
    for c, setting in enumerate(settings):
        while True:  # pattern and stim preset together: one round trip, not two
            before = _pauses(clock)
            target = LightSetting.coerce(setting)
            group = new_uid()
            if c == 0 and staged is not None and staged.pauses == before:
                group = staged.group  # the preset is on its way (and the pattern, if sent)
                if light is not None and staged.pattern is None:
                    yield Msg("set", light, pattern, group=group)
            else:
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
                    then=then if last else None,
                    channel=channel,
                    stage=stage,
                    clock=clock,
                    applied=applied,
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
    then: NextVisit | None = None,
    channel: ChannelPresets | None = None,
    stage: Any = None,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[dict[str, Any]]:
    """One stim frame: its settings read while it is exposed, then ``blank`` dark.

    Taken once and recorded once, like `trigger_and_read_complete` (a pause's resume
    waits for the frame, never triggers it again). ``meanwhile`` runs during the
    exposure. ``blank``: the light to blank after the frame, sent during the exposure
    when the camera's thread applies it once the exposure ends (`Camera.after_exposure`,
    decision 0069), else once the frame is taken; the frame's event (whose pattern was
    read during the exposure) is saved while it goes dark. ``then``: the next visit's
    first preset (on ``channel``) and position (of ``stage``), sent only in the first case
    (`send_ahead`); the next visit sets what was not.
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
    readings = yield from event.begin(devices[:early], stream, awaited=True)
    dark = new_uid()
    blank_now = blank is not None and camera.after_exposure(blank)
    if blank_now:  # dark the moment the frame is read out (the camera's thread)
        yield from _send(Msg("set", blank, False, group=dark), True)
    ahead = []  # the next visit's preset and position
    if then is not None and then.setting is not None and channel is not None:
        ahead.append((channel, "channel", LightSetting.coerce(then.setting)))
    if then is not None and then.xy is not None and stage is not None:
        ahead.append((stage, "xy", then.xy))
    sent = []
    for device, key, value in ahead:
        sent.append(
            (yield from send_ahead(camera, device, key, value, clock=clock, applied=applied))
        )
    try:
        yield from finish_trigger(*started)
    except BaseException:
        yield from event.drop()
        raise
    if blank is not None and not blank_now:  # dark at once; the event is saved meanwhile
        yield Msg("set", blank, False, group=dark)
    readings.update((yield from event.read(devices[early:])))
    yield from event.save()
    if blank is not None:
        yield Msg("wait", None, group=dark)
    for move in sent:  # (what is not in place, the next visit does itself)
        yield from settle(move, clock=clock, applied=applied)
    if failed is not None:
        raise failed
    return readings
