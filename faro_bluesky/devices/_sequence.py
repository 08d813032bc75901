"""A camera sequence that feeds one frame to each of the next N triggers (bursts).

Step-by-step acquisition snaps once per trigger: exposure, read-out and the RunEngine's
work for the frame (trigger, read, save: ~3 ms here) follow one another, so every frame
costs more than its exposure. In a burst (consecutive frames with unchanged settings) the
camera runs one sequence acquisition instead and each trigger takes the next frame of it:
the RunEngine's work for frame k overlaps the exposure of frame k+1, so the burst goes at
camera speed while every frame keeps its own event (visit tags, stage and channel
readings), which is what the analyzer, the status and the catalog read
(docs/decisions/0024-bursts-as-camera-sequences.md).

Pause stops the sequence at once; frames the camera took before it stopped are kept in
order and handed to the next triggers, and on resume the sequence restarts for the frames
still missing. So no frame is taken twice or lost, and none is taken while paused.

The camera runs in chunks of at most ~256 MB of frames: a camera faster than the
triggers can only get one chunk ahead. (Micro-Manager's sequence buffer overwrites its
oldest frames when full: one unbounded sequence would silently lose frames.)

A burst may cycle through several channel presets inside the sequence when every
property that differs between them is sequenceable (`channel_program`, the check
pymmcore-plus's MDA engine makes): each hardware start loads, for the frames of its
chunk, the property values of each frame's preset (starting at the right phase after a
pause) and starts those property sequences with the camera, so the devices switch on
the camera's trigger and no frame waits for a preset round trip
(docs/decisions/0060-channels-inside-camera-sequences.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._worker import CoreWorker

logger = logging.getLogger(__name__)

_POP_WAIT_S = 0.002  # one worker call waits this long for the next frame before yielding
_CHUNK_BYTES = 256e6  # frames one hardware sequence may take ahead of the triggers


Program = dict[tuple[str, str], list[str]]
"""``{(device, property): [value for each preset of the cycle]}``: what a sequence loads."""


def channel_program(core: Any, group: str, presets: Sequence[str]) -> Program | None:
    """What switching ``presets`` in turn inside a camera sequence loads (core thread).

    The properties whose values differ between the presets, each with its value per
    preset; None if one of them is not sequenceable (then the presets can only be
    switched between snaps). Properties equal in all presets stay as the first preset
    set them.
    """
    settings = []
    for preset in presets:
        data = core.getConfigData(group, preset)
        settings.append({(dev, prop): str(value) for dev, prop, value in data})
    keys = set().union(*settings) if settings else set()
    program: Program = {}
    for key in sorted(keys):
        values = [s.get(key) for s in settings]
        if any(v is None for v in values):
            return None  # a preset leaves this property alone: no defined value per frame
        if len(set(values)) == 1:
            continue
        if not core.isPropertySequenceable(*key):
            return None
        program[key] = [str(v) for v in values]
    return program


def core_program(core: Any, presets: Sequence[str]) -> Program | None:
    """`channel_program` for the core's channel group (core thread); None without one."""
    group = core.getChannelGroup()
    return channel_program(core, group, presets) if group else None


def frame_meta(core: Any) -> dict[str, Any]:
    """What is known of the frame just read out (core thread): its end, exposure, preset."""
    group = core.getChannelGroup()
    meta: dict[str, Any] = {"timestamp": time.time(), "exposure_ms": core.getExposure()}
    if group:
        meta["channel"] = core.getCurrentConfigFromCache(group)
    return meta


class SequenceFeed:
    """The armed burst of one camera: frames left, frames already read out, pause state."""

    def __init__(self, worker: CoreWorker, on_expose: Callable[[], None] = lambda: None) -> None:
        self._worker = worker
        self._on_expose = on_expose  # the camera exposes (a running sequence always does)
        self.armed = 0
        """Frames of the burst that triggers have not taken yet."""
        self._to_acquire = 0  # frames the camera still has to expose
        self._to_start = 0  # of those, frames no hardware sequence was asked for yet
        self._in_chunk = 0  # frames the running sequence still owes
        self._buffer: deque[tuple[np.ndarray, dict[str, Any]]] = deque()
        self._running = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self.starts = 0
        """How many times the camera sequence was started (1 + one per pause inside)."""
        self.cycle: tuple[str, ...] = ()
        """Presets the burst's frames take in turn inside the sequence (empty: the
        current preset for every frame)."""
        self._program: Program = {}
        self._total = 0  # frames of the armed burst
        self._popped = 0  # of those, frames read out so far (in order)

    def set_cycle(self, presets: Sequence[str], program: Program) -> None:
        """Frames of the next bursts cycle through ``presets`` (`channel_program`)."""
        self.cycle = tuple(presets)
        self._program = dict(program) if len(self.cycle) > 1 else {}

    # ------------------------------------------------------------------ control
    async def arm(self, n: int) -> None:
        """The next ``n`` triggers take frames of one camera sequence (0 disarms)."""
        if n < 0:
            raise ValueError(f"sequence length {n} must be >= 0")
        await self.disarm()
        self.armed = self._to_acquire = self._to_start = self._total = n
        self._popped = 0

    async def disarm(self) -> None:
        """Stop the sequence; frames read out and not taken by a trigger are dropped."""
        await self._stop_hardware()
        if self._buffer:
            logger.warning(
                "camera sequence disarmed with %d frames read out and never triggered for",
                len(self._buffer),
            )
        self._buffer.clear()
        self.armed = self._to_acquire = self._to_start = self._in_chunk = 0

    async def pause(self) -> None:
        """Stop exposing now; keep what was read out for the triggers after resume."""
        self._resumed.clear()
        await self._stop_hardware()

    def resume(self) -> None:
        """Let the next trigger restart the sequence for the frames still missing."""
        self._resumed.set()

    # ------------------------------------------------------------------ frames
    async def next_frame(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The burst's next frame, in order (starting the camera sequence if needed)."""
        if self.armed <= 0:
            raise RuntimeError("no camera sequence is armed")
        while not self._buffer:
            await self._resumed.wait()
            if not self._running:
                await self._start_hardware()
            frame = await self._worker.run(self._pop, _POP_WAIT_S)
            if frame is not None:
                self._buffer.append(frame)
            elif self._running and not await self._worker.run(self._still_running):
                self._running = False
                if self._in_chunk > 0 and self._resumed.is_set():
                    raise RuntimeError(
                        f"camera sequence stopped with {self._to_acquire} frames to go"
                    )
        self.armed -= 1
        return self._buffer.popleft()

    # --------------------------------------------------------- on the core thread
    def _pop(self, wait: float) -> tuple[np.ndarray, dict[str, Any]] | None:
        core = self._worker.core
        deadline = time.perf_counter() + wait
        while not core.getRemainingImageCount():
            if time.perf_counter() > deadline or not core.isSequenceRunning():
                if not core.getRemainingImageCount():
                    return None
                break
            time.sleep(0.0002)
        self._on_expose()
        image = np.array(core.popNextImage(), copy=True)
        self._to_acquire -= 1
        self._in_chunk -= 1
        meta = frame_meta(core)
        if self._program:  # the preset the sequence gave this frame, not the core's cache
            meta["channel"] = self.cycle[self._popped % len(self.cycle)]
            if self._in_chunk <= 0:  # the chunk's last frame: its devices stop stepping
                self._stop_program()
        self._popped += 1
        return image, meta

    def _stop_program(self) -> None:
        core = self._worker.core
        for dev, prop in self._program:
            core.stopPropertySequence(dev, prop)

    def _still_running(self) -> bool:
        core = self._worker.core
        return core.isSequenceRunning() or core.getRemainingImageCount() > 0

    async def _start_hardware(self) -> None:
        if self._to_start <= 0:
            raise RuntimeError("camera sequence has no frames left to acquire")

        def start() -> int:
            core = self._worker.core
            frame_bytes = max(1, core.getImageBufferSize())
            n = int(min(self._to_start, max(1, _CHUNK_BYTES // frame_bytes)))
            if self._program:
                first = self._total - self._to_start  # the burst's frame this chunk begins at
                c = len(self.cycle)
                for dev, prop in self._program:
                    n = min(n, core.getPropertySequenceMaxLength(dev, prop))
                for (dev, prop), values in self._program.items():
                    core.loadPropertySequence(
                        dev, prop, [values[(first + i) % c] for i in range(n)]
                    )
                    core.startPropertySequence(dev, prop)
            core.startSequenceAcquisition(n, 0.0, True)
            return n

        n = await self._worker.run(start)
        self._to_start -= n
        self._in_chunk = n
        self._running = True
        self.starts += 1

    async def _stop_hardware(self) -> None:
        if not self._running:
            return
        self._running = False

        def stop_and_drain() -> list[tuple[np.ndarray, dict[str, Any]]]:
            core = self._worker.core
            core.stopSequenceAcquisition()
            self._stop_program()
            drained = []
            while core.getRemainingImageCount():
                frame = self._pop(0.0)
                if frame is None:
                    break
                drained.append(frame)
            return drained

        self._buffer.extend(await self._worker.run(stop_and_drain))
        # frames the stopped sequence still owed go to the next one
        self._to_start += max(0, self._in_chunk)
        self._in_chunk = 0
