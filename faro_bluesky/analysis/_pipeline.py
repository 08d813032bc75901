"""`VisitPipeline`: a visit's way from its complete stack to its mask, FOV by FOV.

The latency path (docs/decisions/0030): for a visit whose mask is awaited, only what the
stimulator declares it needs (`Stimulator.needs`) is computed before the mask is
published: segmentation and positions, the tracker (`Need.TRACKS`), the feature columns
(`Need.FEATURES`), earlier frames (`Need.HISTORY`). Segmentation may start with the
segmenter's plane, while the visit's other planes are still being exposed. Tracking runs
per FOV in acquisition order, whatever order the executor finishes in. After its mask,
a visit waits a moment (`AFTER_MASK_HOLD_S`) so that the rest of its work does not compete
with the stimulation the plan is now sending out; the features its mask did not need are
measured in a second job, and `Completion` does the rest.

Jobs go to the executor through `JobFeed` (back-pressure) and come back as messages. Runs
on the analysis thread only, so no state here is shared with another thread but a few
counters read for status displays.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..schema import FrameKind, Stream
from ._completion import Completion
from ._documents import FrameReader, Stack
from ._feed import JobFeed
from ._jobs import FrameResult, measure_labels, with_features
from ._messages import (
    Exposed,
    Exposing,
    FeaturesMeasured,
    Fired,
    FrameIn,
    Key,
    MaskOut,
    Measured,
    Message,
    Segmented,
    Speculated,
    StackIn,
    Start,
    Stop,
)
from ._protocols import Need
from ._records import ErrorLog, Visit
from ._run import AnalysisRun
from ._setup import Setup, frame_info
from ._steps import skip_mask, stimulate, track

AFTER_MASK_HOLD_S = 0.25
"""Longest a visit waits after its mask for its stimulation to go out."""


class VisitPipeline:
    """Accepts stacks, hands them to the executor, tracks, stimulates, completes."""

    def __init__(
        self,
        setup: Setup,
        reader: FrameReader,
        errors: ErrorLog,
        completion: Completion,
        post: Callable[[Message], None],
    ) -> None:
        self._setup = setup
        self._reader = reader
        self._errors = errors
        self._completion = completion
        self._feed = JobFeed(setup, reader, post, self._settle)
        self.run = AnalysisRun(setup.history, root=setup.output)
        """The current run's state (a new one at each start)."""
        self.unstored: list[Fired] = []
        """Masks that went out and are not stored yet (`fired`)."""

    # ------------------------------------------------------------------ runs
    def start_run(self, msg: Start) -> None:
        """A new run: the previous one is finished (the dispatcher made sure)."""
        self.exposing()
        self._completion.finish(self.run)
        self.run = AnalysisRun(self._setup.history, root=self._setup.output, start=msg.doc)
        self.run.stim_mode = msg.doc.get("stim_mode", "current")
        self._setup.board.reset()
        if hasattr(self._setup.tracker, "reset"):
            self._setup.tracker.reset()

    def stop_run(self, msg: Stop) -> None:
        """The run's stop: release held visits, drop early jobs of incomplete visits."""
        run = self.run
        self.exposing()  # the last masks: no exposure may come
        run.ended = True
        run.recorded = msg.doc.get("num_events", {}).get(Stream.PRIMARY) or None
        self.release_after_mask()
        for key in [k for k, job in run.early.items() if job is not None]:
            if key not in run.visits:  # the run stopped before the rest of the visit
                del run.early[key]
                run.planes.pop(key, None)
        run.premasked.clear()  # their stacks will not come: the run stopped before them
        # readout segmentations no event claimed: of frames after the last event, if any
        run.speculative = {loc: j for loc, j in run.speculative.items() if j.key is not None}
        self.finish_if_idle()

    def finish_if_idle(self) -> None:
        """Finish the run once its stop came and nothing of it is under way."""
        if self.run.ended and not self.run.busy():
            self._completion.finish(self.run)

    def tick(self) -> None:
        """No message for a while: finish the visits whose hold after the mask is over."""
        self.release_after_mask(due_only=True)
        self.finish_if_idle()

    def mask_out(self, msg: MaskOut) -> None:
        """A mask is being projected: its FOV's held visits go on (during the exposure)."""
        self.release_after_mask(msg.fov)

    def fired(self, msg: Fired) -> None:
        """A mask went out: its FOV's held visits go on; the mask is stored later.

        Stored once the camera exposes again (`exposing`), or at the run's stop: its zarr
        write (~2 ms of the interpreter) no longer lands between the stimulation and the
        next visit's first exposure, when the plan sets that exposure up (decision 0067).
        """
        self.release_after_mask(msg.ref.fov)
        self.unstored.append(msg)

    def exposing(self, _msg: Exposing | None = None) -> None:
        """A camera exposes: store the masks that went out since the last exposure."""
        while self.unstored:
            msg = self.unstored.pop(0)
            self._completion.fired(self.run, msg.ref, msg.mask)

    # ---------------------------------------------------------------- intake
    def stack_in(self, msg: StackIn) -> None:
        """A complete stack: a reference joins its visit, an image stack starts one."""
        stack, run = msg.stack, self.run
        head = stack.head
        run.uris.add(head.uri)
        self._completion.ensure_outputs(run, head.uri)
        run.n_frames = max(run.n_frames, *(f.index + 1 for f in stack.frames))
        key = (head.fov, head.t)
        if head.kind == FrameKind.REF:
            self._completion.ref_in(run, key, stack)
            return
        if head.kind != FrameKind.IMAGE:
            return
        if (visit := run.premasked.pop(key, None)) is not None:
            self._adopt(visit, stack, msg.arrived)
            return
        awaited = self._setup.stimulator is not None
        needs_mask = awaited and (head.stim or run.stim_mode == "previous")
        run.order[head.fov].append(head.t)
        run.visits[key] = Visit(stack, msg.arrived, needs_mask)
        self._feed.accept(run, stack, stim=head.stim and run.stim_mode == "current")

    def exposed(self, msg: Exposed) -> None:
        """A frame of the segmenter's channel was read out: segment it now (`JobFeed`)."""
        self._feed.speculate(self.run, msg.frame, msg.seen)

    def speculated(self, msg: Speculated) -> None:
        """A readout segmentation finished: an early segmentation, if its event came."""
        key = self._feed.speculated(self.run, msg.loc, msg.future)
        if key is not None:
            self.segmented(Segmented(key, msg.future))
        else:
            self._feed.refill(self.run)
            self.finish_if_idle()

    def frame_in(self, msg: FrameIn) -> None:
        """A plane of a visit still being exposed: maybe segment it now (`JobFeed`)."""
        self._feed.segment_early(self.run, msg.frame)

    # --------------------------------------------------------------- results
    def segmented(self, msg: Segmented) -> None:
        """An early segmentation finished: measure its visit if the stack is in."""
        self._feed.segmented(self.run, msg.key, msg.future)
        self._mask_early(msg.key)
        self.finish_if_idle()

    # ------------------------------------------- a mask from the segmenter's plane
    def _mask_early(self, key: Key) -> None:
        """Publish the mask of a visit still being exposed, from its segmenter's plane.

        When the stimulator needs only labels (and tracks), its other planes cannot change
        the mask: waiting for them would only add their exposure to the latency. The
        visit waits in `AnalysisRun.premasked` for its stack (`_adopt`).
        """
        run, setup = self.run, self._setup
        future = run.early.get(key)
        if future is None or key in run.visits or key not in run.planes:
            return
        frame, plane, read_at = run.planes[key]
        if future.exception() is not None or not self._feed.masks_from_plane(run, frame):
            return
        del run.early[key], run.planes[key]
        segmentation = future.result()
        stack = Stack((frame,))
        visit = Visit(stack, time.monotonic(), needs_mask=True)
        visit.image = plane[np.newaxis]
        visit.info = frame_info(stack, visit.image.shape)
        visit.pixels_at = read_at
        visit.spans.append((segmentation.started, segmentation.ended))
        started = time.time()
        visit.result = measure_labels(
            setup.features, segmentation.labels, visit.image, visit.info, with_features=False
        )
        run.premasked[key] = visit
        if not self._feed.needs_tracks():
            visit.spans.append((started, time.time()))
            stimulate(setup, self._errors, visit, visit.result.cells)
        else:
            try:
                visit.cells = track(setup.tracker, visit.result.cells, frame)
            except Exception as exc:
                visit.errors.append(str(self._errors.record("tracking", exc, *key)))
                skip_mask(setup.board, visit)
                visit.tracked = True
                return
            visit.spans.append((started, time.time()))
            visit.tracked = True
            run.recent[key[0]].append(visit.cells)
            stimulate(setup, self._errors, visit, self._stimulator_tracks(key[0], visit.cells))
        visit.compute_ms = sum(end - start for start, end in visit.spans) * 1000.0

    def _adopt(self, visit: Visit, stack: Stack, arrived: float) -> None:
        """A premasked visit's stack came: the rest of its work, as for any visit."""
        run, key = self.run, visit.key
        visit.stack, visit.arrived = stack, arrived
        run.visits[key] = visit
        try:
            image = self._reader.read_stack(stack)
            visit.image, visit.info = image, frame_info(stack, image.shape)
        except Exception as exc:  # its features are measured on the plane it has
            visit.errors.append(str(self._errors.record("read", exc, *key)))
        if not visit.tracked:  # tracked in acquisition order, with the FOV's other visits
            run.order[key[0]].append(key[1])
            self._advance(key[0])
        elif visit.mask is not None:
            run.after_mask[key] = (visit, time.monotonic() + AFTER_MASK_HOLD_S)
        else:
            self._finish_visit(visit)

    def measured(self, msg: Measured) -> None:
        """A visit's segmentation job finished: take it, track in order."""
        self.run.inflight -= 1
        exc = msg.future.exception()
        self._take(self.run.visits[msg.key], exc if exc is not None else msg.future.result())
        self._feed.refill(self.run)
        self._advance(msg.key[0])

    def _take(
        self, visit: Visit, outcome: FrameResult | BaseException, source: str = "segmentation"
    ) -> None:
        """A visit's segmentation result, or why there is none."""
        if isinstance(outcome, BaseException):
            visit.failed = True
            visit.errors.append(str(self._errors.record(source, outcome, *visit.key)))
        else:
            visit.result = outcome
            visit.compute_ms += outcome.seconds * 1000.0  # its job started after the pixels
        self._mask_untracked(visit)

    def _settle(self, visit: Visit, outcome: FrameResult | BaseException, source: str) -> None:
        """A result known without a job message (`JobFeed`): take it, track in order."""
        self._take(visit, outcome, source)
        self._advance(visit.key[0])

    # ------------------------------------------------------ ordering, masks
    def _mask_untracked(self, visit: Visit) -> None:
        """Settle a mask that does not wait for the tracker: as soon as the frame is segmented."""
        if not visit.needs_mask or self._feed.needs_tracks():
            return
        if visit.failed:
            skip_mask(self._setup.board, visit)
        elif visit.result is not None:
            stimulate(self._setup, self._errors, visit, visit.result.cells)

    def _advance(self, fov: int) -> None:
        """Track this FOV's segmented frames in acquisition order."""
        run = self.run
        order = run.order[fov]
        while order and run.visits[(fov, order[0])].done:
            self._tracked(run.visits[(fov, order.popleft())])
        self.finish_if_idle()

    def _tracked(self, visit: Visit) -> None:
        """Track a segmented frame, settle its mask, then measure and store the rest."""
        fov, t = visit.key
        result = visit.result
        if result is None:  # segmentation failed
            skip_mask(self._setup.board, visit)
            self._completion.complete(self.run, visit)
            return
        try:
            started = time.perf_counter()
            visit.cells = track(self._setup.tracker, result.cells, visit.stack.head)
            visit.compute_ms += (time.perf_counter() - started) * 1000.0
            self.run.recent[fov].append(visit.cells)
        except Exception as exc:
            visit.errors.append(str(self._errors.record("tracking", exc, fov, t)))
            skip_mask(self._setup.board, visit)
            self._completion.complete(self.run, visit)
            return
        if visit.needs_mask and not visit.masked:
            stimulate(self._setup, self._errors, visit, self._stimulator_tracks(fov, visit.cells))
            if visit.mask is not None:
                # The plan is now projecting this mask and exposing: the rest of the visit
                # (features, labels, tracks) would compete with it for the interpreter, so
                # it waits until the stimulation went out (its frame arrives) or a moment.
                self.run.after_mask[visit.key] = (visit, time.monotonic() + AFTER_MASK_HOLD_S)
                return
        self._finish_visit(visit)

    def _stimulator_tracks(self, fov: int, cells: pd.DataFrame) -> pd.DataFrame:
        """The tracks the stimulator gets: this frame's rows, or the FOV's recent ones.

        With `Need.HISTORY` the FOV's last frames (``cells`` are already among them).
        """
        if Need.HISTORY in self._feed.needs():
            return pd.concat(self.run.recent[fov], ignore_index=True)
        return cells

    # --------------------------------------------------------- after the mask
    def release_after_mask(self, fov: int | None = None, *, due_only: bool = False) -> None:
        """Finish the visits held after their mask: of ``fov`` (None: all), or those due."""
        now = time.monotonic()
        after_mask = self.run.after_mask
        for key, (visit, due) in list(after_mask.items()):
            if (fov is None or key[0] == fov) and (not due_only or now >= due):
                del after_mask[key]
                self._finish_visit(visit)

    def _finish_visit(self, visit: Visit) -> None:
        """Measure the features the mask did not need (executor), then complete."""
        if visit.result.measured or self._setup.features is None:
            self._completion.complete(self.run, visit)
            return
        try:  # the features the mask did not need: after it, on the executor
            self._feed.measure_features(self.run, visit)
        except Exception as exc:
            visit.errors.append(str(self._errors.record("features", exc, *visit.key)))
            self._completion.complete(self.run, visit)

    def features_measured(self, msg: FeaturesMeasured) -> None:
        """The features of a frame measured after its mask: join them and store."""
        run = self.run
        run.inflight -= 1
        visit = run.visits[msg.key]
        exc = msg.future.exception()
        if exc is not None:
            visit.errors.append(str(self._errors.record("features", exc, *msg.key)))
        else:
            table, extra = msg.future.result()
            visit.cells = with_features(visit.cells, table)
            visit.result.extra.update(extra)
        self._completion.complete(run, visit)
        self._feed.refill(run)
        self.finish_if_idle()
