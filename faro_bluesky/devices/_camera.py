"""`Camera`: an ophyd-async StandardDetector over an MMCore camera, writing zarr."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from ophyd_async.core import (
    AsyncStatus,
    PathProvider,
    StandardDetector,
    TriggerInfo,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from pymmcore_plus import CMMCorePlus

from ._camera_logic import CameraIO, MMAcquireLogic, MMTriggerLogic, ZarrDataLogic
from ._frames import FrameCache
from ._sequence import Program, core_program
from ._timing import FrameTiming
from ._worker import CoreWorker


def exposure_limits(core: CMMCorePlus, camera: str) -> tuple[float, float] | None:
    """The camera's exposure limits in ms, or None if it reports none."""
    if core.hasPropertyLimits(camera, "Exposure"):
        return core.getPropertyLowerLimit(camera, "Exposure"), core.getPropertyUpperLimit(
            camera, "Exposure"
        )
    return None


def check_exposure(field: str, value: float, limits: tuple[float, float] | None) -> None:
    """Raise a ValueError naming ``field`` if ``value`` (ms) is not a valid exposure."""
    if value <= 0:
        raise ValueError(f"{field}={value:g} ms must be > 0 ms")
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise ValueError(
            f"{field}={value:g} ms is outside the camera's exposure limits "
            f"[{limits[0]:g}, {limits[1]:g}] ms: choose an exposure inside them"
        )


class Camera(StandardDetector):
    """The microscope camera as a bluesky detector.

    Each trigger snaps one frame at the current exposure, or, after
    ``bps.mv(camera.sequence, n)``, takes the next frame of one camera sequence of ``n``
    frames (a burst at camera speed, one event per frame); ``prepare`` with
    ``number_of_events > 1`` plus kickoff/complete/collect runs a sequence as a fly scan. Frames
    go to a zarr store per run, announced with ``stream_resource``/``stream_datum``
    documents, and stay in memory in `frames` for the closed-loop analyzer.

    :param core: the core whose current camera this is.
    :param path_provider: where the zarr stores go (one per prepare after stage).
    :param cache_size: how many recent frames `frames` keeps in memory.
    :param pixel_size_um: pixel size in the sample (for the OME-Zarr scale); default
        the core's current pixel size, else 1.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        path_provider: PathProvider,
        *,
        cache_size: int = 64,
        pixel_size_um: float | None = None,
        name: str = "",
    ) -> None:
        self._worker = CoreWorker.for_core(core)
        self._label = core.getCameraDevice()
        self.pixel_size_um = pixel_size_um
        if not self._label:
            raise ValueError("no camera: set the core's camera device first")
        self.exposure = soft_signal_rw(
            float, units="ms", getter=self._get_exposure, setter=self._set_exposure
        )
        self.sequence = soft_signal_rw(int, 0, getter=self._get_sequence, setter=self._arm)
        """Frames the next triggers take from one camera sequence (a burst); 0 = snaps."""
        self.sequence_channels = soft_signal_rw(
            Sequence[str], (), setter=self._set_sequence_channels
        )
        """Channel presets a burst's frames take in turn inside the sequence (set before
        `sequence`); empty = every frame at the current preset. Refused unless the presets
        differ only in sequenceable properties (`sequenceable`)."""
        self.start_at = soft_signal_rw(float, 0.0, units="s", setter=self._set_start_at)
        """When the next snap may start exposing (epoch s): a trigger sent ahead of time
        starts its exposure then, on the core's thread. Used once; 0 = at once."""
        self.frames = FrameCache(cache_size)
        self.timing = FrameTiming()
        """Start and end of the latest exposure; plans read it with every frame."""
        written, set_written = soft_signal_r_and_setter(int, 0)
        self._io = CameraIO(
            cache=self.frames, set_written=set_written, set_timing=self.timing.update
        )
        trigger = MMTriggerLogic(self.exposure)
        self._acquire = MMAcquireLogic(self._worker, trigger, self._io)
        self.add_detector_logics(
            trigger,
            self._acquire,
            ZarrDataLogic(path_provider, self._io, written, self._geometry),
        )
        super().__init__(name=name)

    @property
    def retries(self) -> int:
        """A failed snap is tried again this many times (default 2) before it fails."""
        return self._acquire.retries

    @retries.setter
    def retries(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"camera.retries={value!r} must be an integer >= 0")
        self._acquire.retries = value

    @property
    def retried(self) -> int:
        """How many failed snaps were retried so far (transient camera errors)."""
        return self._acquire.retried

    @property
    def exposure_limits(self) -> tuple[float, float] | None:
        """Exposure limits in ms reported by the camera, or None."""
        return self._worker.call(exposure_limits, self._worker.core, self._label)

    async def _get_exposure(self) -> float:
        return await self._worker.run(self._worker.core.getExposure)

    async def _set_exposure(self, value: float) -> None:
        core = self._worker.core
        limits = await self._worker.run(exposure_limits, core, self._label)
        check_exposure(f"{self.name or 'camera'}.exposure", value, limits)
        await self._worker.run(core.setExposure, value)

    def queue_stats(self) -> dict[str, tuple[int, int]]:
        """``{"zarr": (frames queued for disk, capacity)}`` for the run status."""
        writer = self._io.writer
        if writer is None:
            return {}
        return {"zarr": (writer.pending, writer.max_queued)}

    async def _set_start_at(self, when: float) -> None:
        self._acquire.start_at = float(when)

    async def _get_sequence(self) -> int:
        return self._acquire.feed.armed

    async def _arm(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"{self.name or 'camera'}.sequence={n} must be >= 0 frames")
        await self._acquire.feed.arm(int(n))

    def sequenceable(self, presets: Sequence[str]) -> bool:
        """Whether a burst can switch between ``presets`` inside one camera sequence."""
        if len(presets) < 2:
            return True
        return self._worker.call(core_program, self._worker.core, presets) is not None

    async def _set_sequence_channels(self, presets: Sequence[str]) -> None:
        presets = tuple(str(p) for p in presets)
        program: Program | None = {}
        if len(presets) > 1:
            program = await self._worker.run(core_program, self._worker.core, presets)
            if program is None:
                raise ValueError(
                    f"{self.name or 'camera'}.sequence_channels={list(presets)}: these presets "
                    "differ in properties the devices cannot sequence; take them step by "
                    "step (leave sequence_channels empty)"
                )
        self._acquire.feed.set_cycle(presets, program)

    async def pause(self) -> None:
        """The RunEngine pauses: stop a running burst sequence (its frames are kept)."""
        self._acquire.welcome_writes()  # no exposure follows soon: write held frames
        await self._acquire.feed.pause()

    def unstage(self) -> AsyncStatus:
        """End of the run: held frames are written at once, then the store is closed.

        The RunEngine calls this without waiting for it after a ``halt``: the frames are
        sent to disk before it returns, the store is closed in the background.
        """
        self._acquire.welcome_writes()  # no exposure follows soon: write held frames
        return super().unstage()

    async def resume(self) -> None:
        """The RunEngine resumes: the next trigger restarts the burst where it stopped."""
        self._acquire.feed.resume()

    async def _geometry(self) -> tuple[int, int, np.dtype, float]:
        def query() -> tuple[int, int, np.dtype, float]:
            core = self._worker.core
            dtype = np.dtype(f"<u{core.getBytesPerPixel()}")
            pixel = self.pixel_size_um or core.getPixelSizeUm() or 1.0
            return core.getImageHeight(), core.getImageWidth(), dtype, pixel

        return await self._worker.run(query)

    async def _fail_fast(self, status: AsyncStatus) -> None:
        """Await ``status`` but raise at once if the acquisition itself failed."""
        failed = asyncio.ensure_future(self._acquire.failed.wait())
        done, _ = await asyncio.wait({status.task, failed}, return_when=asyncio.FIRST_COMPLETED)
        if status.task in done:
            failed.cancel()
            await status
            return
        status.task.cancel()
        await asyncio.gather(status.task, return_exceptions=True)
        error = self._acquire.error
        raise RuntimeError(f"{self.name or 'camera'} acquisition failed: {error}") from error

    def trigger(self) -> AsyncStatus:
        """Snap one frame; done when it is in `frames` and queued for disk.

        The snap starts before this returns (`MMAcquireLogic.begin_snap`), so the
        exposure runs while the RunEngine reads the frame's settings. Its status is then
        the read-out itself (`_read_out`); any other trigger (a burst's frame, the first
        trigger without a prepare) goes through `StandardDetector.trigger`.
        """
        self._acquire.begin_snap()
        ctx = self._prepare_ctx
        began = self._acquire.exposing is not None
        if began and ctx is not None and ctx.trigger_info.number_of_events == 1:
            return self._read_out(ctx.trigger_info)
        return self._trigger()

    @AsyncStatus.wrap
    async def _read_out(self, info: TriggerInfo) -> None:
        """The trigger of a snap begun on the core's thread: wait for it, store the frame.

        What `StandardDetector.trigger` does for one frame, without its watcher: that
        path hands the frame over through the frame counter's subscription, the trigger's
        progress generator and `_fail_fast`, each a turn of the event loop, and the
        RunEngine resumed ~0.6 ms after the read-out where this takes ~0.35 (profiled:
        decision 0069). Same bookkeeping (the data providers' context), same timeout.
        """
        try:
            await self._update_prepare_context(info)
            async with asyncio.timeout(info.exposure_timeout):
                await self._acquire.acquire_begun()
        finally:
            self._acquire.forget_snap()  # (none left unless it failed before the snap)

    def after_exposure(self, device: object) -> bool:
        """Whether a move of ``device`` sent now is applied only once this exposure ends.

        True when the last trigger began its snap on the core's thread (a plain snap) and
        ``device`` makes its core calls on that same thread, which runs calls in order:
        a preset, pattern or blank sent during the exposure is then applied the moment
        the frame is read out, with no RunEngine round trip in between (decision 0069).
        False for a burst's frame (the camera sequence exposes on its own) and for any
        device not over this camera's core.
        """
        return self._acquire.exposing is not None and getattr(device, "_worker", None) is (
            self._worker
        )

    @AsyncStatus.wrap
    async def _trigger(self) -> None:
        self._acquire.failed.clear()
        try:
            await self._fail_fast(super().trigger())
        finally:
            self._acquire.forget_snap()  # (none left unless the trigger failed early)

    @AsyncStatus.wrap
    async def complete(self) -> None:
        """Wait for a kicked-off sequence to be on disk."""
        await self._fail_fast(super().complete())
