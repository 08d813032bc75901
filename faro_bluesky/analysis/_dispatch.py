"""`Dispatcher`: the analysis thread, its inbox, and the hand-over from one run to the next.

Everything the analysis does happens on this one thread, in the order its messages
arrive: the RunEngine's thread posts documents (never waiting), the executor's threads
post the results of their jobs, and each message goes to its handler by type
(`_messages`). The thread owns no analysis state: `VisitPipeline` does. The dispatcher
adds one rule: a run starts only when the previous one is finished, so the new run's
documents wait here (held, nothing lost) while the previous run's late results, which
are never held, drain. ``posted``/``handled`` counts let `wait_idle` tell when every
document given so far has been dealt with.

Posting is a counter under a condition plus a `queue.SimpleQueue` put, as before the
split: the message flow from a frame's documents to its mask has no further hop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._messages import (
    Close,
    Exposed,
    Exposing,
    FeaturesMeasured,
    Fired,
    FrameIn,
    JobResult,
    MaskOut,
    Measured,
    Message,
    Segmented,
    Speculated,
    StackIn,
    Start,
    Stop,
)
from ._pipeline import AFTER_MASK_HOLD_S, VisitPipeline
from ._records import ErrorLog


class Dispatcher:
    """Runs the analysis thread: takes messages, holds a next run's, routes by type."""

    def __init__(self, errors: ErrorLog) -> None:
        self._errors = errors
        self._inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._posted = 0
        self._handled = 0
        self._held: deque[Message] = deque()
        """A next run's messages, while the previous run is still being analysed."""
        self._thread: threading.Thread | None = None
        self._pipeline: VisitPipeline
        self._routes: dict[type, Callable[[Any], None]] = {}

    def route_to(self, pipeline: VisitPipeline) -> None:
        """Hand every message to ``pipeline``'s handler for its type (before `start`).

        Separate from the constructor because the pipeline posts its jobs' results
        straight to `post`: it is built with the dispatcher's `post` in hand.
        """
        self._pipeline = pipeline
        self._routes = {
            Start: pipeline.start_run,
            FrameIn: pipeline.frame_in,
            StackIn: pipeline.stack_in,
            Segmented: pipeline.segmented,
            Exposed: pipeline.exposed,
            Speculated: pipeline.speculated,
            Measured: pipeline.measured,
            FeaturesMeasured: pipeline.features_measured,
            MaskOut: pipeline.mask_out,
            Fired: pipeline.fired,
            Exposing: pipeline.exposing,
            Stop: pipeline.stop_run,
        }

    @property
    def started(self) -> bool:
        """Whether the thread runs (it starts with the first document)."""
        return self._thread is not None

    def start(self) -> None:
        """Start the analysis thread."""
        self._thread = threading.Thread(target=self._loop, name="faro-analyzer", daemon=True)
        self._thread.start()

    def post(self, msg: Message) -> None:
        """Queue ``msg`` for the analysis thread (any thread; never blocks)."""
        with self._cond:
            self._posted += 1
        self._inbox.put(msg)

    def queued(self) -> int:
        """Messages not yet taken by the thread."""
        return self._inbox.qsize()

    def idle(self) -> bool:
        """Every message handled and the run's work done (jobs, deferred, held visits)."""
        return self._handled == self._posted and not self._held and self._pipeline.run.idle()

    def wait_idle(self, timeout: float | None) -> bool:
        """Block until `idle`; False after ``timeout`` s (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self.idle():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """End the thread (after the messages already queued)."""
        if self._thread is not None:
            self.post(Close())
            self._thread.join(timeout=timeout)

    # ------------------------------------------------------------ the thread
    def _loop(self) -> None:
        pipeline, inbox = self._pipeline, self._inbox
        while True:
            try:
                msg = inbox.get(timeout=AFTER_MASK_HOLD_S if pipeline.run.after_mask else None)
            except queue.Empty:
                try:
                    pipeline.tick()
                    self._take_up_held()
                except Exception as exc:
                    self._errors.record("storage", exc)
                with self._cond:  # held visits released: `wait_idle` must look again
                    self._cond.notify_all()
                continue
            try:
                if isinstance(msg, Close):
                    pipeline.exposing()  # masks that went out are stored before closing
                    if pipeline.run.tracks is not None:
                        pipeline.run.tracks.close()
                    return
                self._handle(msg)
                self._take_up_held()
            except Exception as exc:
                self._errors.record("storage", exc)
            finally:
                with self._cond:
                    self._handled += 1
                    self._cond.notify_all()

    def _handle(self, msg: Message) -> None:
        run = self._pipeline.run
        if not isinstance(msg, JobResult) and (
            self._held or (isinstance(msg, Start) and run.busy())
        ):
            # The previous run is still being analysed: its late results must not land in
            # the new run's state, so the new run waits (documents only; nothing is lost).
            run.ended = True
            self._held.append(msg)
            return
        self._routes[type(msg)](msg)

    def _take_up_held(self) -> None:
        """The run that held the next one back has finished: handle what waited, in order."""
        if self._held and not self._pipeline.run.ended:
            held, self._held = self._held, deque()
            for msg in held:
                self._handle(msg)
