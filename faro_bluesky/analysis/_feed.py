"""`JobFeed`: hands visits to the executor, at most ``max_inflight`` at once.

Back-pressure without loss (ARCHITECTURE decision 5): a stack that finds every worker
busy waits as a reference (no pixels held) and is read back, from the camera's memory
cache or the zarr store, when a worker frees; one whose mask is awaited jumps the queue.
A visit whose mask is awaited gets only what its stimulator needs in its first job
(docs/decisions/0030), and its segmentation may start with the segmenter's plane while
the visit's other planes are still being exposed (`segment_early`).

Jobs post their results to the analysis thread as messages (`Measured`, `Segmented`,
`FeaturesMeasured`); a visit whose result is known here at once (its stack could not be
read, or its early segmentation only needs positions added) is handed to ``settle``.
Analysis thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from ..devices import Frame
from ..schema import FrameKind
from ._documents import FrameReader, FrameRef, Stack
from ._jobs import (
    FrameResult,
    Segmentation,
    measure,
    measure_features,
    measure_labels,
    segment_early,
)
from ._messages import FeaturesMeasured, Key, Measured, Message, Segmented, Speculated
from ._protocols import Need
from ._records import Visit
from ._run import AnalysisRun, Speculation
from ._setup import Setup, frame_info

_SPECULATED = 8
"""Finished readout segmentations no event claimed (yet) kept per run, at most."""

Settle = Callable[[Visit, FrameResult | BaseException, str], None]
"""Takes a visit's segmentation outcome (and the step that failed, if it did)."""


class JobFeed:
    """Submits segmentation and measurement jobs within the executor's cap."""

    def __init__(
        self, setup: Setup, reader: FrameReader, post: Callable[[Message], None], settle: Settle
    ) -> None:
        self._setup = setup
        self._reader = reader
        self._post = post
        self._settle = settle

    def masks_from_plane(self, run: AnalysisRun, frame: FrameRef) -> bool:
        """Whether ``frame``'s visit may get its mask from this plane alone (`Need.STACK`).

        Only a stimulation now (current mode) by a stimulator that needs neither the
        visit's other planes nor features, and, if it needs tracks, with every earlier
        visit of the FOV tracked (tracking goes in acquisition order).
        """
        needs = self.needs()
        if self._setup.stimulator is None or needs & {Need.STACK, Need.FEATURES}:
            return False
        if not (frame.stim and run.stim_mode == "current") or run.ended:
            return False
        if self.needs_tracks():
            return not run.order[frame.fov] and all(k[0] != frame.fov for k in run.premasked)
        return True

    def needs(self) -> frozenset[Need]:
        """What the stimulator needs before its mask (nothing without one)."""
        stimulator = self._setup.stimulator
        return frozenset() if stimulator is None else stimulator.needs

    def needs_tracks(self) -> bool:
        """Whether the stimulator's mask waits for the tracker (`TRACKS` or `HISTORY`)."""
        return bool(self.needs() & {Need.TRACKS, Need.HISTORY})

    def _with_features_now(self, visit: Visit) -> bool:
        """A frame whose mask is awaited gets only what the stimulator needs before it."""
        return not visit.needs_mask or Need.FEATURES in self.needs()

    def accept(self, run: AnalysisRun, stack: Stack, stim: bool) -> None:
        """Submit a new visit's stack now, or defer it (first in line if ``stim``)."""
        if run.inflight < self._setup.max_inflight:
            self.submit(run, stack)
        elif stim:
            run.deferred.appendleft(stack)  # a mask is awaited: jump the queue
        else:
            run.deferred.append(stack)

    def refill(self, run: AnalysisRun) -> None:
        """Submit deferred stacks while workers are free."""
        while run.deferred and run.inflight < self._setup.max_inflight:
            self.submit(run, run.deferred.popleft())

    def submit(self, run: AnalysisRun, stack: Stack) -> None:
        """Read a visit's stack and start its job (or finish its early segmentation)."""
        setup = self._setup
        visit = run.visits[(stack.head.fov, stack.head.t)]
        if visit.key not in run.early:  # its segmenter's plane may be segmented already
            any(self.adopt(run, frame) for frame in stack.frames)
        early = visit.key in run.early
        try:
            image = self._reader.read_stack(stack)
            visit.pixels_at = time.time()  # the latency's "pixels" stage ends (MaskTimes)
            info = frame_info(stack, image.shape)
            if not early:
                now = self._with_features_now(visit)
                future = setup.executor.submit(
                    measure, setup.segmenter, setup.features, image, info, with_features=now
                )
        except Exception as exc:
            run.early.pop(visit.key, None)  # its result (if it comes) is not wanted
            run.planes.pop(visit.key, None)
            self._settle(visit, exc, "read")
            return
        visit.image, visit.info = image, info
        if early:  # its segmentation started with its first plane
            if run.early[visit.key] is not None:
                self.measure_segmented(run, visit)
            return
        run.inflight += 1
        future.add_done_callback(lambda f, key=visit.key: self._post(Measured(key, f)))

    def speculate(self, run: AnalysisRun, frame: Frame, seen: int | None = None) -> None:
        """Segment a frame of the segmenter's channel the moment the camera read it out.

        Its event comes later (composed while the next frame is exposed); the visit it
        names adopts the result (`adopt`), so segmentation no longer waits for the event.
        Only with a free worker and while a run is under way; a result no event adopts is
        dropped at the run's stop (a few at most: see `_SPECULATED`). ``seen``: the
        `EXPOSURES` generation at the readout; the job starts with the next exposure
        (`segment_early`), not while the plan sets up that exposure.
        """
        setup = self._setup
        loc = (frame.uri, frame.index)
        if setup.stimulator is None or run.ended or frame.uri not in run.uris:
            return  # (a run's first frame: its array is known from its event on)
        if loc in run.speculative:
            return
        if run.inflight >= setup.max_inflight:
            return
        plane = np.asarray(frame.image)
        future = setup.executor.submit(segment_early, setup.segmenter, plane, seen)
        run.speculative[loc] = Speculation(future, plane, time.time())
        run.inflight += 1
        future.add_done_callback(lambda f, loc=loc: self._post(Speculated((-1, -1), f, loc)))
        unclaimed = [k for k, s in run.speculative.items() if s.done and s.key is None]
        for old in unclaimed[: max(0, len(unclaimed) - _SPECULATED)]:
            del run.speculative[old]  # frames no visit of this run claimed (another plan's)

    def speculated(self, run: AnalysisRun, loc: tuple[str, int], future: Future[Any]) -> Key | None:
        """A readout segmentation finished: the key of the visit waiting for it, if any."""
        job = run.speculative.get(loc)
        if job is None or job.future is not future or job.key is None:
            run.inflight -= 1  # unclaimed so far (or dropped): kept until its event comes
            if job is not None and job.future is future:
                job.done = True
            return None
        del run.speculative[loc]
        return job.key  # `segmented` counts the job as done

    def adopt(self, run: AnalysisRun, frame: FrameRef) -> bool:
        """Take ``frame``'s readout segmentation as its visit's early one, if there is one."""
        loc, key = (frame.uri, frame.index), (frame.fov, frame.t)
        job = run.speculative.get(loc)
        if job is None or frame.kind != FrameKind.IMAGE or key in run.early:
            return False
        if not self._mine(frame):
            return False
        del run.speculative[loc]
        run.early[key] = None
        run.planes[key] = (frame, job.plane, job.read_at)
        if job.done:  # finished before its event: handled as an early segmentation now
            run.inflight += 1
            self._post(Segmented(key, job.future))
        else:
            job.key = key
            run.speculative[loc] = job
        return True

    def _mine(self, frame: FrameRef) -> bool:
        """Whether ``frame`` is of the segmenter's channel."""
        channel = self._setup.segmenter.channel
        return channel == frame.c if isinstance(channel, int) else channel == frame.channel

    def segment_early(self, run: AnalysisRun, frame: FrameRef) -> None:
        """Segment a visit's segmentation plane as soon as it is taken, if a mask is awaited.

        The visit's other planes are still being exposed: segmentation, the longest step
        before the mask, overlaps them instead of following the last one. Only with a free
        worker; otherwise the stack's own job segments it as usual.
        """
        setup = self._setup
        run.uris.add(frame.uri)
        if self.adopt(run, frame):  # segmented at its readout already
            return
        awaited = setup.stimulator is not None and (frame.stim or run.stim_mode == "previous")
        mine = self._mine(frame)
        key = (frame.fov, frame.t)
        if not (awaited and mine and frame.kind == FrameKind.IMAGE) or key in run.early:
            return
        if run.inflight >= setup.max_inflight:
            return
        try:
            plane = self._reader.read(frame)
            read_at = time.time()
            future = setup.executor.submit(segment_early, setup.segmenter, plane)
        except Exception:
            return  # the stack's own job reads and segments again (and records a failure)
        run.early[key] = None
        run.planes[key] = (frame, plane, read_at)
        run.inflight += 1
        future.add_done_callback(lambda f, key=key: self._post(Segmented(key, f)))

    def segmented(self, run: AnalysisRun, key: Key, future: Future[Any]) -> None:
        """An early segmentation finished: measure its visit if the stack is in."""
        run.inflight -= 1
        if key in run.early:  # else its stack could not be read: not wanted any more
            run.early[key] = future
            visit = run.visits.get(key)
            if visit is None and run.ended:
                del run.early[key]  # the run stopped before the rest of the visit
                run.planes.pop(key, None)
            elif visit is not None and visit.image is not None:
                self.measure_segmented(run, visit)
        self.refill(run)

    def measure_segmented(self, run: AnalysisRun, visit: Visit) -> None:
        """Positions (or the declared features) of a visit segmented early, then settle."""
        setup = self._setup
        future = run.early.pop(visit.key)
        run.planes.pop(visit.key, None)
        outcome: FrameResult | BaseException | None = future.exception()
        if outcome is None:
            segmentation: Segmentation = future.result()
            labels = segmentation.labels
            visit.compute_ms += segmentation.on_path_ms(visit.exposure_end)
            try:
                if self._with_features_now(visit):
                    job = setup.executor.submit(
                        measure_labels, setup.features, labels, visit.image, visit.info
                    )
                    run.inflight += 1
                    job.add_done_callback(lambda f, key=visit.key: self._post(Measured(key, f)))
                    return
                # positions only (~0.5 ms): here, not one more hop through the executor
                outcome = measure_labels(
                    setup.features, labels, visit.image, visit.info, with_features=False
                )
            except Exception as exc:
                outcome = exc
        self._settle(visit, outcome, "segmentation")

    def measure_features(self, run: AnalysisRun, visit: Visit) -> None:
        """Start the job measuring the features a visit's mask did not need (may raise)."""
        features, result = self._setup.features, visit.result
        future = self._setup.executor.submit(
            measure_features, features, result.labels, visit.image, visit.info
        )
        run.inflight += 1
        future.add_done_callback(lambda f, key=visit.key: self._post(FeaturesMeasured(key, f)))
