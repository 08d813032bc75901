"""Sending a plan's message while a trigger is under way, and counting pauses.

Shared by the stubs (`_stubs`) and the moves sent during an exposure (`_ahead`).
"""

from __future__ import annotations

from typing import Any

from bluesky import Msg
from bluesky.utils import FailedStatus, MsgGenerator

from ._tags import PauseClock


def _pauses(clock: PauseClock | None) -> int:
    return clock.consume()[1] if clock is not None else 0


def _send(msg: Msg, awaited: bool) -> MsgGenerator[Any]:
    """Yield ``msg``; with ``awaited``, a failed status thrown in with its response is let go.

    The RunEngine throws a status's failure into the plan at its next message, even one
    that does not wait for it (that message is done; only its response is lost). Between
    a trigger and its wait the plan composes events: the trigger's failure belongs to that
    wait, which finds it again (`finish_trigger`), not to the event (a failed snap would
    otherwise drop the previous frame's event, or end the run instead of missing a visit).
    The answer is then `_LOST` (None is the RunEngine's answer to a message a pause cut).
    """
    if not awaited:
        return (yield msg)
    try:
        return (yield msg)
    except FailedStatus:
        return _LOST


_LOST = object()
"""`_send`'s answer when a failed status was thrown in: the message was done, its response lost."""
