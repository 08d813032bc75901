"""Small helpers read or seen by the experiment plans: visit tags and the pause clock."""

from __future__ import annotations

import json
import time
from typing import Any

from ophyd_async.core import StandardReadable, soft_signal_r_and_setter

from ..schema import MISSED, VISIT, FrameKind


class VisitTag(StandardReadable):
    """What each frame is: timepoint, FOV, phase, kind and schedule, read with every frame.

    ``kind`` is ``"image"``, ``"ref"`` or ``"stim"``; ``c`` is the channel's position within
    its kind and ``n`` the number of channels of that kind in the visit (so a consumer knows
    when a visit's stack is complete); ``stim``/``ref`` say whether the visit stimulates /
    takes reference channels; ``metadata`` is the phase metadata as JSON (also for phases
    chosen while running, which the start document can't hold);
    ``scheduled`` is the visit's scheduled start (epoch s, after any shift). The
    analyzer and the status callback find frames by these fields, so documents alone
    describe the experiment: their keys are `faro_bluesky.schema.VisitField`, and a test
    checks that what this tag writes parses with `faro_bluesky.schema.VisitFields`.
    """

    def __init__(self, name: str = VISIT) -> None:
        with self.add_children_as_readables():
            self.t, self._set_t = soft_signal_r_and_setter(int, -1)
            self.p, self._set_p = soft_signal_r_and_setter(int, -1)
            self.frame, self._set_frame = soft_signal_r_and_setter(int, -1)
            self.index, self._set_index = soft_signal_r_and_setter(int, -1)
            self.phase, self._set_phase = soft_signal_r_and_setter(str, "")
            self.kind, self._set_kind = soft_signal_r_and_setter(str, "")
            self.c, self._set_c = soft_signal_r_and_setter(int, 0)
            self.n, self._set_n = soft_signal_r_and_setter(int, 0)
            self.stim, self._set_stim = soft_signal_r_and_setter(bool, False)
            self.ref, self._set_ref = soft_signal_r_and_setter(bool, False)
            self.metadata, self._set_metadata = soft_signal_r_and_setter(str, "{}")
            self.scheduled, self._set_scheduled = soft_signal_r_and_setter(float, 0.0, units="s")
        super().__init__(name=name)

    def update(self, visit: Any, *, scheduled: float) -> None:
        """Tag the frames of ``visit`` (a `Visit`)."""
        self._set_t(visit.t)
        self._set_p(visit.p)
        self._set_frame(visit.frame)
        self._set_index(visit.index)
        self._set_phase(visit.phase)
        self._set_stim(bool(visit.stim))
        self._set_ref(bool(visit.ref))
        self._set_metadata(json.dumps(visit.metadata, default=str, sort_keys=True))
        self._set_scheduled(scheduled)

    def frame_kind(self, kind: FrameKind | str, c: int, n: int) -> None:
        """Tag the next frame as channel ``c`` of the ``n`` channels of ``kind``."""
        self._set_kind(str(FrameKind(kind)))  # a plain str in documents; no unknown kind
        self._set_c(c)
        self._set_n(n)


class MissedVisit(StandardReadable):
    """Why a visit's frames are missing: read with the `VisitTag` into stream ``missed``."""

    def __init__(self, name: str = MISSED) -> None:
        with self.add_children_as_readables():
            self.device, self._set_device = soft_signal_r_and_setter(str, "")
            self.reason, self._set_reason = soft_signal_r_and_setter(str, "")
        super().__init__(name=name)

    def update(self, device: str, reason: str) -> None:
        """Say which device failed the visit and how."""
        self._set_device(device)
        self._set_reason(reason)


class PauseClock:
    """Measures time spent paused or suspended; the RunEngine calls ``pause``/``resume``.

    The RunEngine notifies every Pausable object a plan has sent a message to, so the plan
    sends it one (``Msg("null", clock)``). Suspensions may end without ``resume()``, so
    paused time is also closed when the plan asks for it (`consume`): the plan only runs
    when it is not paused.
    """

    def __init__(self) -> None:
        self._since: float | None = None
        self.total = 0.0
        self.count = 0

    def pause(self) -> None:
        """Called by the RunEngine when it pauses or suspends."""
        if self._since is None:
            self._since = time.monotonic()
            self.count += 1

    def resume(self) -> None:
        """Called by the RunEngine on resume."""
        self._close()

    def _close(self) -> None:
        if self._since is not None:
            self.total += time.monotonic() - self._since
            self._since = None

    def consume(self) -> tuple[float, int]:
        """Paused seconds so far and the number of pauses (closing an open pause)."""
        self._close()
        return self.total, self.count
