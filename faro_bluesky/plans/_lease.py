"""Borrow a RunEngine for one background run and give it back as it was.

A RunEngine built for the prompt (``faro-bluesky shell``: bluesky's SIGINT handler, a
Qt-aware ``during_task``) cannot simply be called from a worker thread: the SIGINT
handler raises there (``signal`` only works on the main thread) and bluesky's default
``during_task`` would run matplotlib's Qt loop on the worker. `EngineLease` changes what
must change for the run and restores it afterwards, so blocking ``RE(plan)`` with Ctrl-C
works again as soon as the background run ends.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any

from bluesky.utils import DuringTask, SigintHandler

__all__ = ["EngineLease", "on_loop"]

_ACTIVE: weakref.WeakKeyDictionary[Any, EngineLease] = weakref.WeakKeyDictionary()
_ACTIVE_LOCK = threading.Lock()


class _WorkerDuringTask(DuringTask):
    """The RunEngine's own ``during_task`` on the main thread; a plain wait elsewhere.

    Off the main thread there is no GUI to keep alive, and Qt must not run there.
    """

    def __init__(self, inner: DuringTask) -> None:
        super().__init__()
        self.inner = inner

    def block(self, blocking_event: threading.Event) -> None:
        """Wait for ``blocking_event`` (through the original task on the main thread)."""
        if threading.current_thread() is threading.main_thread():
            self.inner.block(blocking_event)
        else:
            blocking_event.wait()


class EngineLease:
    """What a background run changes on ``RE``, undone by `release`.

    - bluesky's SIGINT handler is left out of ``RE.context_managers``;
    - ``during_task`` only waits off the main thread (there is no public setter: the
      private attribute is swapped and put back);
    - ``on_state`` is chained into ``RE.state_hook`` (any hook already there still runs);
    - a recorder keeps the RunStart uids and the last RunStop document;
    - the lease is the RunEngine's only one: a second is refused until this one ends.
    """

    def __init__(self, RE: Any, on_state: Callable[[str], None], owner: Any) -> None:
        with _ACTIVE_LOCK:
            other = _ACTIVE.get(RE)
            if other is not None:
                raise RuntimeError(
                    f"a background run is already {other.owner.status()} on this "
                    "RunEngine: call its handle's wait() or cancel() first"
                )
            if str(RE.state) != "idle":
                raise RuntimeError(f"the RunEngine is {RE.state}; it must be idle")
            _ACTIVE[RE] = self
        self.RE = RE
        self.owner = owner
        self.starts: list[str] = []
        self.stop: dict[str, Any] | None = None
        self._on_state = on_state
        self._held = True
        self._saved_managers = RE.context_managers
        self._managers = [m for m in RE.context_managers if not _is_sigint(m)]
        RE.context_managers = self._managers
        self._saved_during = RE._during_task
        self._during = _WorkerDuringTask(RE._during_task)
        RE._during_task = self._during
        self._token = RE.subscribe(self._record)
        self._prev_hook = RE.state_hook
        RE.state_hook = self._hook

    def release(self) -> None:
        """Put the RunEngine back as it was (what others changed meanwhile stays)."""
        RE = self.RE
        self._held = False
        if RE.context_managers is self._managers:
            RE.context_managers = self._saved_managers
        if RE._during_task is self._during:
            RE._during_task = self._saved_during
        RE.unsubscribe(self._token)
        if RE.state_hook == self._hook:
            RE.state_hook = self._prev_hook
        # else a later hook (a StatusCallback bound meanwhile) chains to ours: ours forwards
        with _ACTIVE_LOCK:
            if _ACTIVE.get(RE) is self:
                del _ACTIVE[RE]

    def _hook(self, new: Any, old: Any) -> None:
        if self._prev_hook is not None:
            self._prev_hook(new, old)
        if self._held:
            self._on_state(str(new))

    def _record(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self.starts.append(doc["uid"])
        elif name == "stop":
            self.stop = doc


def on_loop(RE: Any) -> bool:
    """True on the RunEngine's own thread (where a blocking RE call would deadlock)."""
    try:
        return asyncio.get_running_loop() is RE.loop
    except RuntimeError:
        return False


def _is_sigint(manager: Any) -> bool:
    return isinstance(manager, type) and issubclass(manager, SigintHandler)
