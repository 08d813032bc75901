"""One worker thread per core: every MMCore call of our devices goes through it.

A blocking MMCore call on the RunEngine's event loop would delay pause handling by the
call's full duration (ARCHITECTURE decision 2), and MMCore is not designed for calls from
many threads at once. So each core gets exactly one single-thread executor, shared by all
devices built over that core, and devices ``await worker.run(fn, ...)``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from pymmcore_plus import CMMCorePlus

T = TypeVar("T")

_WORKERS: weakref.WeakKeyDictionary[CMMCorePlus, CoreWorker] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_HANDOFF_S = 0.002  # longest `start` waits for the core's thread to take a call
# Python lets a thread keep the interpreter 5 ms before one that wants it may take it: the
# core's thread, back from the camera, then waits while the RunEngine composes an event.
# 1 ms keeps a frame's readout off that queue (measured: decision 0063).
_SWITCH_INTERVAL_S = 0.001


class CoreWorker:
    """A single thread that serialises the calls made to one `CMMCorePlus`.

    Use `CoreWorker.for_core(core)` so that every device over the same core shares the
    same thread.
    """

    def __init__(self, core: CMMCorePlus) -> None:
        self.core = core
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmcore")
        if sys.getswitchinterval() > _SWITCH_INTERVAL_S:  # (a process-wide setting)
            sys.setswitchinterval(_SWITCH_INTERVAL_S)

    @classmethod
    def for_core(cls, core: CMMCorePlus) -> CoreWorker:
        """Return the worker of ``core``, creating it on first use."""
        with _LOCK:
            worker = _WORKERS.get(core)
            if worker is None:
                worker = _WORKERS[core] = cls(core)
            return worker

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the core's thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def start(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` on the core's thread, begun before this returns.

        `run` hands a call over when the event loop next idles (the RunEngine may compose
        an event first), and the core's thread then waits for the interpreter; here the
        caller waits until that thread has begun the call (at most 2 ms, never for the
        call itself). For a snap: its exposure starts before the RunEngine goes on.
        """
        begun = threading.Event()

        def begin() -> T:
            begun.set()
            return fn(*args)

        future = self._executor.submit(begin)
        begun.wait(_HANDOFF_S)
        return future

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the core's thread from synchronous code and wait for it."""
        return self._executor.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        """Stop the thread once pending calls are done."""
        self._executor.shutdown(wait=True)
        with _LOCK:
            if _WORKERS.get(self.core) is self:
                del _WORKERS[self.core]
