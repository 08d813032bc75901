"""Moves sent while a frame exposes, applied by the core's thread once it is read out.

Decision 0069: the core's thread runs our devices' MMCore calls in order, so a preset, a
stage move or a pattern sent during a plain snap's exposure (`Camera.after_exposure`) is
applied the moment the frame is read out, not a RunEngine round trip later. Each
``send_*`` sends only (``awaited``, see `_send`); its ``settle_*`` waits and says whether
the move is in place, else the caller makes it itself, with its retry and error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bluesky import Msg
from bluesky.utils import FailedStatus, MsgGenerator, new_uid

from ..devices import Camera, ChannelPresets, LightSetting
from ._send import _pauses, _send
from ._tags import PauseClock

__all__ = [
    "NextVisit",
    "send_move",
    "send_preset",
    "settle_move",
    "settle_preset",
    "wait_first",
]


SentPreset = tuple[str, LightSetting, int]
"""`send_preset`'s group, setting and pause count."""


def send_preset(
    camera: Camera,
    channel: ChannelPresets,
    setting: Any,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[SentPreset | None]:
    """During an exposure, send the next preset if the camera's thread applies it after.

    The core's thread runs calls in order (`Camera.after_exposure`): the preset is then
    applied the moment the frame is read out, not a RunEngine round trip later
    (decision 0069). Finish with `settle_preset`. None (nothing sent) if it is applied
    already, if nothing keeps track of what is applied, or if the camera's exposure does
    not hold that thread. Sends only (``awaited``, see `_send`).
    """
    target = LightSetting.coerce(setting)
    if applied is None or applied.get("channel") == target or not camera.after_exposure(channel):
        return None
    group = new_uid()
    yield from _send(Msg("set", channel, target, group=group), True)
    return group, target, _pauses(clock)


def settle_preset(
    sent: SentPreset | None,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[bool]:
    """Wait for a `send_preset`; True (and ``applied`` says so) if it is in place.

    False if nothing was sent, it failed, or a pause came since (which leaves a preset
    untrusted): the caller sets it itself then (`set_channel`, with its retry and error).
    """
    if sent is None:
        return False
    group, target, since = sent
    try:
        yield Msg("wait", None, group=group)
    except FailedStatus:
        return False
    if _pauses(clock) != since or applied is None:
        return False
    applied["channel"] = target
    return True


@dataclass(frozen=True)
class NextVisit:
    """Where the next visit starts: its FOV's position and its first preset.

    None: not known, or set by other means. For moves sent ahead (`send_preset`,
    `send_move`).
    """

    xy: tuple[float, float] | None = None
    setting: Any = None


SentMove = tuple[str, tuple[float, float], int]
"""`send_move`'s group, position and pause count."""


def send_move(
    camera: Camera,
    stage: Any,
    xy: tuple[float, float],
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[SentMove | None]:
    """During an exposure, send the stage to ``xy`` if the camera's thread moves it after.

    As `send_preset` (decision 0069): the stage starts for the next FOV the moment the
    frame is read out. Finish with `settle_move`; None if nothing was sent.
    """
    if applied is None or applied.get("xy") == xy or not camera.after_exposure(stage):
        return None
    group = new_uid()
    yield from _send(Msg("set", stage, xy, group=group), True)
    return group, xy, _pauses(clock)


def settle_move(
    sent: SentMove | None,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[bool]:
    """Wait for a `send_move`; True (and ``applied`` says so) if the stage is there.

    False if nothing was sent, it failed or a pause stopped it: the next visit moves
    (`move`, with its retry and error).
    """
    if sent is None:
        return False
    group, xy, since = sent
    try:
        yield Msg("wait", None, group=group)
    except FailedStatus:
        return False
    if _pauses(clock) != since or applied is None:
        return False
    applied["xy"] = xy
    return True


def wait_first(statuses: Sequence[Any]) -> MsgGenerator[None]:
    """Wait until one of ``statuses`` is done (bluesky's ``wait`` waits for all).

    Nothing is raised for a failed one: its own wait finds it. A pause may cut the wait
    short (the statuses are then simply not done).
    """
    pending = [s for s in statuses if s is not None]
    if not pending or any(s.done for s in pending):
        return
    yield from _send(Msg("wait_for", None, [lambda: _first_done(pending)]), True)


async def _first_done(statuses: Sequence[Any]) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def finished(_: Any) -> None:
        if not done.done():
            done.set_result(None)

    def callback(status: Any) -> None:  # (on the loop's thread for an AsyncStatus)
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            finished(status)
        else:
            loop.call_soon_threadsafe(finished, status)

    for status in statuses:
        status.add_callback(callback)
    await done
