"""Following a run in another process: bluesky's `RemoteDispatcher` on a thread of its own.

`RemoteDispatcher.start()` runs its own asyncio loop until the loop is stopped, so it
needs a thread, and it can only be stopped from inside that loop: `Follower.stop` hands
the loop a shutdown callback (``call_soon_threadsafe``), which cancels the tasks and lets
``start()`` return and close the socket. Callbacks run on that thread, like a RunEngine's
callbacks run on the RunEngine's: a `StatusCallback` fed here feeds a Qt widget through
its bridge exactly as it would in-process.

What 0MQ publish/subscribe gives and does not: documents arrive in order, but a follower
sees only what is published after its subscription reached the proxy (start it before
the run), and a follower too slow for the stream loses documents rather than slowing the
RunEngine (the proxy's queue per follower holds 1000 messages).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from bluesky.callbacks.zmq import RemoteDispatcher

from ._wire import unpack

logger = logging.getLogger(__name__)

Callback = Callable[[str, Mapping[str, Any]], Any]
Task = Callable[[], Coroutine[Any, Any, Any]]


class Follower:
    """Documents from a 0MQ proxy's output, handed to callbacks on a thread of their own.

    Made by `follow`. ``stop()`` (or leaving a ``with`` block) ends it; `error` holds the
    exception that ended it otherwise (an unreachable address, a malformed message).
    """

    def __init__(
        self,
        address: str,
        callbacks: Iterable[Callback],
        *,
        prefix: bytes = b"",
        tasks: Iterable[Task] = (),
        name: str = "faro-follow",
    ) -> None:
        self.address = address
        self.prefix = prefix
        self.error: BaseException | None = None
        """What ended the follower, if not `stop`."""
        self._callbacks = list(callbacks)
        self._task_factories = list(tasks)
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, timeout: float = 10.0) -> Follower:
        """Connect and start dispatching; raise what prevented it."""
        self._thread.start()
        if not self._running.wait(timeout):
            raise TimeoutError(f"following {self.address} did not start within {timeout:g} s")
        if self.error is not None:
            raise ConnectionError(f"cannot follow {self.address}: {self.error}") from self.error
        return self

    @property
    def alive(self) -> bool:
        """Whether documents are still being received."""
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            dispatcher = RemoteDispatcher(self.address, prefix=self.prefix, deserializer=unpack)
            for callback in self._callbacks:
                dispatcher.subscribe(callback)
            loop = dispatcher.loop
            self._tasks = [loop.create_task(make()) for make in self._task_factories]
            with self._lock:
                self._loop = loop
            loop.call_soon(self._running.set)  # runs once start() has connected the socket
            dispatcher.start()
        except asyncio.CancelledError:
            pass  # stop()
        except Exception as exc:
            self.error = exc
            logger.error("following %s ended: %s", self.address, exc)
        finally:
            with self._lock:
                self._loop = None
            self._running.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop dispatching, close the socket and wait for the thread (any thread)."""
        with self._lock:
            loop = self._loop
            if loop is not None:
                loop.call_soon_threadsafe(_shutdown, loop, self._tasks)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the follower has stopped; False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "following" if self.alive else "stopped"
        return f"Follower({self.address!r}, {state})"


def _shutdown(loop: asyncio.AbstractEventLoop, mine: list[asyncio.Task]) -> None:
    """Cancel our tasks, then (once they are done) the dispatcher's, so ``start()`` returns."""

    def finish(_: object = None) -> None:
        for task in asyncio.all_tasks(loop):
            task.cancel()

    for task in mine:
        task.cancel()
    if mine:
        asyncio.gather(*mine, return_exceptions=True).add_done_callback(finish)
    else:
        finish()


def follow(address: str, *callbacks: Callback, prefix: bytes = b"") -> Follower:
    """Feed the documents published to the proxy whose output is ``address`` to ``callbacks``.

    Returns a started `Follower`; ``follower.stop()`` ends it. Callbacks run on the
    follower's thread, in document order. A terminal or a napari widget follows a run in
    another process or on another machine with the status it already uses::

        status = StatusCallback()
        follower = follow("tcp://microscope-pc:5578", status)
        add_to_napari(viewer, status)      # or ProgressDisplay(status=status)
    """
    return Follower(address, callbacks, prefix=prefix).start()
