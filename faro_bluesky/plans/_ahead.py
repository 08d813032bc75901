"""Moves sent while a frame exposes, applied by the core's thread once it is read out.

Decision 0069: the core's thread runs our devices' MMCore calls in order, so a preset, a
stage move or a pattern sent during a plain snap's exposure (`Camera.after_exposure`) is
applied the moment the frame is read out, not a RunEngine round trip later. `send_ahead`
sends only (``awaited``, see `_send`); `settle` waits and says whether the move is in
place, else the caller makes it itself, with its retry and error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bluesky import Msg
from bluesky.utils import FailedStatus, MsgGenerator, new_uid

from ..devices import Camera
from ._send import _pauses, _send
from ._tags import PauseClock

__all__ = ["NextVisit", "Sent", "send_ahead", "settle", "wait_first"]


@dataclass(frozen=True)
class NextVisit:
    """Where the next visit starts: its FOV's position and its first preset.

    None: not known, or set by other means. For moves sent ahead (`send_ahead`).
    """

    xy: tuple[float, float] | None = None
    setting: Any = None


@dataclass(frozen=True)
class Sent:
    """A move `send_ahead` sent: its group, what ``applied`` records it as, the pauses."""

    group: str
    key: str
    value: Any
    pauses: int


def send_ahead(
    camera: Camera,
    device: Any,
    key: str,
    value: Any,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[Sent | None]:
    """During an exposure, send ``device`` to ``value`` if the camera's thread applies it after.

    ``key``: what the caller's ``applied`` records for it (``"channel"``: a preset, a
    `LightSetting`; ``"xy"``: the stage's position). The core's thread runs calls in order
    (`Camera.after_exposure`): the move is then made the moment the frame is read out,
    not a RunEngine round trip later (decision 0069). Finish with `settle`. None (nothing
    sent) if it is in place already, if nothing keeps track of what is, or if the
    camera's exposure does not hold that thread. Sends only (``awaited``, see `_send`).
    """
    if applied is None or applied.get(key) == value or not camera.after_exposure(device):
        return None
    group = new_uid()
    yield from _send(Msg("set", device, value, group=group), True)
    return Sent(group, key, value, _pauses(clock))


def settle(
    sent: Sent | None,
    *,
    clock: PauseClock | None = None,
    applied: dict[str, Any] | None = None,
) -> MsgGenerator[bool]:
    """Wait for a `send_ahead`; True (and ``applied`` says so) if the move is in place.

    False if nothing was sent, it failed, or a pause came since (which stops a stage and
    leaves a preset untrusted): the caller makes the move itself then (`set_channel`,
    `move`, with their retry and error).
    """
    if sent is None:
        return False
    try:
        yield Msg("wait", None, group=sent.group)
    except FailedStatus:
        return False
    if _pauses(clock) != sent.pauses or applied is None:
        return False
    applied[sent.key] = sent.value
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
