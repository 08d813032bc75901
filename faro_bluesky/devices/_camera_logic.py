"""The three logic objects of `Camera`: trigger, acquire (snap or sequence), zarr data."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DataKey
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    SignalR,
    SignalRW,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
)

from ._exposures import EXPOSURES
from ._frames import Frame, FrameCache
from ._sequence import SequenceFeed, frame_meta
from ._worker import CoreWorker
from ._zarr_store import ZarrFrameWriter

logger = logging.getLogger(__name__)


@dataclass
class CameraIO:
    """State shared by the acquire and data logics of one camera during a run."""

    cache: FrameCache
    set_written: Callable[[int], None]
    set_timing: Callable[[float, float], None] = lambda start, end: None
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="zarr-writer")
    )
    writer: ZarrFrameWriter | None = None
    uri: str = ""

    async def store(self, image: np.ndarray, meta: dict[str, Any]) -> None:
        """Queue ``image`` for zarr, keep it in memory, count it: the frame is taken.

        The disk write happens on the writer's own thread; only a full write queue makes
        this wait (off the event loop), so a frame is never dropped.
        """
        writer = self.writer
        if writer is None:
            raise RuntimeError("camera was triggered before it was prepared")
        index = writer.try_submit(image)
        if index is None:
            loop = asyncio.get_running_loop()
            index = await loop.run_in_executor(self.executor, writer.submit, image)
        end, exposure_ms = meta.pop("timestamp"), meta.pop("exposure_ms")
        meta.setdefault("exposure_start", end - exposure_ms / 1000.0)
        self.cache.add(
            Frame(
                uri=self.uri,
                index=index,
                image=image,
                timestamp=end,
                exposure_ms=exposure_ms,
                metadata=meta,
            )
        )
        self.set_timing(meta["exposure_start"], end)
        self.set_written(index + 1)


class MMTriggerLogic(DetectorTriggerLogic):
    """Internal triggering only: software snaps or a camera sequence."""

    def __init__(self, exposure: SignalRW[float]) -> None:
        self.exposure = exposure
        self.num = 1

    def config_sigs(self) -> set[SignalR]:
        """Exposure is the only setting that changes what a frame means."""
        return {self.exposure}

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        """Remember how many frames to take; ``livetime`` (s) > 0 sets the exposure."""
        self.num = num
        if livetime > 0:
            await self.exposure.set(livetime * 1000.0)

    async def default_trigger_info(self) -> TriggerInfo:
        """One frame per trigger at the current exposure."""
        return TriggerInfo()


class MMAcquireLogic(DetectorAcquireLogic):
    """Acquires ``trigger.num`` frames per start: a snap for one, a sequence for more.

    Failures are kept in `error` and announced through `failed` so that `Camera` can
    fail the trigger at once instead of waiting for the exposure timeout.
    """

    def __init__(self, worker: CoreWorker, trigger: MMTriggerLogic, io: CameraIO) -> None:
        self._worker = worker
        self._trigger = trigger
        self._io = io
        self._task: asyncio.Task | None = None
        self.failed = asyncio.Event()
        self.error: BaseException | None = None
        self.feed = SequenceFeed(worker, on_expose=self.welcome_writes)
        """The armed burst, if any: single triggers then take frames of one sequence."""
        self.retries = 2
        """A failed snap is tried again this many times before the trigger fails."""
        self.retried = 0
        """Snaps that failed and were retried (transient camera errors), for the record."""
        self.start_at = 0.0
        """When the next snap's exposure may start (epoch s; 0: at once). One snap only."""
        self._begun: tuple[Future, float] | None = None  # `begin_snap`'s snap and its start
        self.exposing: Future | None = None
        """The snap the last trigger began on the core's thread (None: it began none)."""

    def welcome_writes(self) -> None:
        """An exposure starts: held frames may go to disk, held work may run (`EXPOSURES`)."""
        EXPOSURES.open()
        if (writer := self._io.writer) is not None:
            writer.welcome()  # earlier frames go to disk while the camera exposes

    def _snap(self, at: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
        core = self._worker.core
        if (delay := at - time.time()) > 0:
            # a scheduled start: the trigger came ahead of time and the exposure starts
            # here, on the core's thread, when due (no event-loop wake-up in between)
            time.sleep(delay)
        started = time.time()
        self.welcome_writes()
        core.snapImage()
        image = np.array(core.getImage(), copy=True)
        meta = frame_meta(core)
        meta["exposure_start"] = started
        return image, meta

    async def _sequence(self, n: int) -> None:
        """A fly scan's ``n`` frames: the same chunked sequence a burst's triggers take."""
        await self.feed.arm(n)
        try:
            for _ in range(n):
                await self._io.store(*await self.feed.next_frame())
        finally:
            await self.feed.disarm()

    async def _acquire(self, n: int) -> None:
        try:
            if n == 1 and self.feed.armed > 0:
                image, meta = await self.feed.next_frame()
                await self._io.store(image, meta)
            elif n == 1:
                image, meta = await self._snap_with_retries()
                await self._io.store(image, meta)
            else:
                await self._sequence(n)
        except Exception as exc:
            self.error = exc
            self.failed.set()
            raise

    async def acquire_begun(self) -> None:
        """Take the frame `begin_snap` began: as `start_acquiring` + its task, in this task.

        `Camera._read_out`, the trigger of a plain snap, runs it as its own coroutine, so
        the frame is stored and the trigger done in one turn of the event loop after the
        read-out; a stop cancels this task like the acquisition task it stands for.
        """
        self.error = None
        self.failed.clear()
        self._task = asyncio.current_task()
        await self._acquire(1)

    def begin_snap(self) -> None:
        """Start the next trigger's snap now, on the core's thread (`CoreWorker.start`).

        Called from `Camera.trigger` itself: through the detector's tasks the snap would
        reach the core's thread only when the event loop next idles, after the RunEngine
        has composed the previous frame's event (~0.5-1.5 ms later, decision 0063). Only
        for a plain snap (no burst armed, one frame per trigger, a store open).
        """
        self.exposing = None
        if self.feed.armed or self._trigger.num != 1 or self._io.writer is None:
            return
        if self._task is not None and not self._task.done():
            return  # (the last acquisition is still under way: it goes first)
        at, self.start_at = self.start_at, 0.0
        self._begun = self._worker.start(self._snap_tries, at), at
        self.exposing = self._begun[0]

    def forget_snap(self) -> None:
        """A trigger that failed before acquiring: its begun snap is not this frame's."""
        if (begun := self._begun) is not None:
            self._begun = None
            begun[0].add_done_callback(lambda f: f.cancelled() or f.exception())
            logger.warning("a snap begun for a trigger that failed was discarded")

    def _snap_tries(self, at: float = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
        """`_snap`, tried again up to `retries` times; on the core's thread, in one call.

        The retries are part of the same call so that nothing queued on the core's thread
        after the snap (a preset or a pattern sent during the exposure, decision 0069)
        runs between a failed attempt and its retry.
        """
        for attempt in range(self.retries + 1):
            try:
                return self._snap(at)
            except Exception as exc:
                if attempt == self.retries:
                    raise
                self.retried += 1
                logger.warning("camera snap failed (%s); trying again", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _snap_with_retries(self) -> tuple[np.ndarray, dict[str, Any]]:
        at, self.start_at = self.start_at, 0.0
        begun, self._begun = self._begun, None
        if begun is not None:
            return await asyncio.wrap_future(begun[0])
        return await self._worker.run(self._snap_tries, at)

    async def start_acquiring(self) -> None:
        """Start taking the prepared number of frames in the background."""
        self.error = None
        self.failed.clear()
        self._task = asyncio.create_task(self._acquire(self._trigger.num))
        # its failure reaches the trigger through `failed`/`error`; never "never retrieved"
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def wait_for_idle(self) -> None:
        """Wait for the acquisition task; re-raise its failure."""
        if self._task is not None:
            await self._task

    async def ensure_ready(self) -> None:
        """No burst left armed from an earlier run."""
        await self.feed.disarm()

    async def ensure_stopped(self) -> None:
        """Cancel a running acquisition and stop any camera sequence."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.feed.disarm()
        core = self._worker.core
        if await self._worker.run(core.isSequenceRunning):
            await self._worker.run(core.stopSequenceAcquisition)


class _SingleCollectionProvider(StreamResourceDataProvider):
    """StreamResource provider that refuses collections_per_event != 1 with a clear error.

    Its stream datums skip event-model's JSON-schema check: a step-scan frame's camera
    reading composes one, after the exposure and before the next (0.15 ms of the ~2 ms
    between frames, profiled: decision 0063), and event-model builds it from typed fields.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for bundle in self.bundles:
            bundle.compose_stream_datum = functools.partial(
                bundle.compose_stream_datum, validate=False
            )

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        if collections_per_event != 1:
            raise ValueError(
                f"Camera supports collections_per_event=1 only, got {collections_per_event}: "
                "use number_of_events instead"
            )
        return await super().make_datakeys(collections_per_event)


class ZarrDataLogic(DetectorDataLogic):
    """Opens a new zarr store per prepare and describes it as a StreamResource."""

    def __init__(
        self,
        path_provider: PathProvider,
        io: CameraIO,
        written: SignalR[int],
        geometry: Callable[[], Awaitable[tuple[int, int, np.dtype, float]]],
    ) -> None:
        self._path_provider = path_provider
        self._io = io
        self._written = written
        self._geometry = geometry

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        """Create ``<dir>/<filename>.zarr/<datakey>`` and return its StreamResource."""
        info = self._path_provider(datakey_name)
        height, width, dtype, pixel_size = await self._geometry()
        store = Path(info.directory_path) / f"{info.filename}.zarr"
        loop = asyncio.get_running_loop()
        self._io.writer = await loop.run_in_executor(
            self._io.executor,
            lambda: ZarrFrameWriter(
                store, datakey_name, (height, width), dtype, pixel_size_um=pixel_size
            ),
        )
        self._io.uri = f"{info.directory_uri}{info.filename}.zarr/{datakey_name}"
        self._io.set_written(0)
        return _SingleCollectionProvider(
            uri=self._io.uri,
            resources=[
                StreamResourceInfo(
                    data_key=datakey_name,
                    shape=(height, width),
                    chunk_shape=(1, 1, height, width),
                    dtype_numpy=dtype.str,
                    parameters={},
                )
            ],
            mimetype="application/x-zarr",
            collections_written_signal=self._written,
        )

    async def stop(self) -> None:
        """Wait until every frame is on disk, then forget the store.

        The next prepare opens a new one.
        """
        writer, self._io.writer = self._io.writer, None
        if writer is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._io.executor, writer.close)
