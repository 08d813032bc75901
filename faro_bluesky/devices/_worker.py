"""One worker thread per core: every MMCore call of our devices goes through it.

A blocking MMCore call on the RunEngine's event loop would delay pause handling by the
call's full duration (ARCHITECTURE decision 2), and MMCore is not designed for calls from
many threads at once. So each core gets exactly one single-thread executor, shared by all
devices built over that core, and devices ``await worker.run(fn, ...)``.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pymmcore_plus import CMMCorePlus

T = TypeVar("T")

_WORKERS: weakref.WeakKeyDictionary[CMMCorePlus, CoreWorker] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class CoreWorker:
    """A single thread that serialises the calls made to one `CMMCorePlus`.

    Use `CoreWorker.for_core(core)` so that every device over the same core shares the
    same thread.
    """

    def __init__(self, core: CMMCorePlus) -> None:
        self.core = core
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmcore")

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

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the core's thread from synchronous code and wait for it."""
        return self._executor.submit(fn, *args, **kwargs).result()

    def shutdown(self) -> None:
        """Stop the thread once pending calls are done."""
        self._executor.shutdown(wait=True)
        with _LOCK:
            if _WORKERS.get(self.core) is self:
                del _WORKERS[self.core]
