"""Frames appended to a zarr array that tiled can serve and OME-Zarr readers open.

Layout of one store (one per camera and run, see docs/decisions/0003-camera-zarr-layout.md):
``<dir>/<uuid>.zarr`` is an OME-Zarr 0.5 image group holding one array named after the
detector's data key, shaped ``(n_frames, 1, height, width)`` with axes ``t, c, y, x``,
one chunk per frame. ``(n_frames, 1, h, w)`` is what tiled expects for a StreamResource
whose DataKey shape is ``[1, h, w]`` (ophyd-async prepends collections_per_event).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import zarr
from numpy.typing import DTypeLike, NDArray
from zarr.codecs import BloscCodec

from ._exposures import EXPOSURES
from ._native_heap import give_back_freed_memory
from ._ngff import image, ome_attrs

logger = logging.getLogger(__name__)


def ome_image_attrs(array_name: str, pixel_size_um: float, name: str) -> dict:
    """NGFF 0.5 ``ome`` attributes for an image group holding ``array_name`` (t, c, y, x).

    Built from yaozarrs' models (`_ngff`): the raw array's ``t`` is the frame index, so
    its time axis has no unit and a scale of 1 (per-FOV views carry the real time axis).
    """
    return ome_attrs(image(array_name, name, pixel_size_um))


def path_from_uri(uri: str) -> Path:
    """Local path of a ``file://`` URI (as in the stream_resource documents we write)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise ValueError(f"uri={uri!r} is not a file URI: only local stores can be opened")
    return Path(unquote(parsed.path))


class ZarrFrameWriter:
    """Append-only writer of ``(n, 1, h, w)`` frames into one zarr v3 array, on its own thread.

    `submit` hands a frame over and returns its index at once: the camera's trigger is
    done when the frame is in memory and queued (issue "acquisition at camera speed"),
    never when it is on disk. One thread writes the queue in order, several frames per
    write when it falls behind. The queue is bounded (``max_queued`` frames): when it is
    full `submit` blocks, which is counted in `backpressure` and never drops a frame.
    The array grows ahead of the frames, `GROW_FRAMES` at a time (a resize rewrites the
    array's metadata through an atomic file replace: done per frame it cost more CPU than
    the frame's own write, profiled), and `close` trims it to the frames written. While a
    run is written, frames past `written` read as fill value; `frames_written` counts the
    frames really on disk (their chunks), which is what recovery uses after a kill. A
    process killed mid-run loses at most the frames still queued (`pending`), which its
    raw document log announces and recovery discards (docs/durability.md).

    Writes wait for the camera's next exposure (`welcome`, called as one starts): zarr's
    Python (codec pipeline, I/O loop; ~1-2 ms per frame) holds the interpreter, and a
    frame written at once fell on the closed loop's critical path (exposure end -> stim
    exposure start: measured 4.2-4.6 ms without frame writes, 6.3-7.4 ms with them).
    During an exposure the plan only waits. A frame waits at most `hold_s`, and not at
    all when a `flush`/`close` needs it or the queue is full; a camera sequence welcomes
    every write, so bursts lose no throughput.
    """

    hold_s = 0.25
    """Longest a frame waits for an exposure before it is written anyway."""

    def __init__(
        self,
        store_path: Path,
        array_name: str,
        shape: tuple[int, int],
        dtype: DTypeLike,
        *,
        pixel_size_um: float = 1.0,
        max_queued: int = 64,
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued={max_queued} must be >= 1")
        self.store_path = Path(store_path)
        self.array_name = array_name
        self.frame_shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(self.store_path, mode="a", zarr_format=3)
        group.attrs["ome"] = ome_image_attrs(array_name, pixel_size_um, self.store_path.stem)
        h, w = self.frame_shape
        self._array = group.create_array(
            array_name,
            shape=(0, 1, h, w),
            chunks=(1, 1, h, w),
            dtype=self.dtype,
            compressors=frame_compressor(),
            fill_value=0,
            dimension_names=("t", "c", "y", "x"),
            # every frame has its chunk, even an all-zero one: chunks count the frames
            config={"write_empty_chunks": True},
        )
        self.capacity = 0
        """Frames the array's shape holds now (>= `written`; trimmed by `close`)."""
        self._shape_lock = threading.Lock()  # the writer thread's growth vs `settle`'s trim
        self.max_queued = max_queued
        self.count = 0
        """Frames submitted (the next frame's index)."""
        self.written = 0
        """Frames on disk."""
        self.backpressure = 0
        """How many submits found the queue full and had to wait for the disk."""
        self.error: BaseException | None = None
        """The write failure that stopped this writer, if any."""
        self._queue: queue.Queue[tuple[float, NDArray] | None] = queue.Queue(max_queued)
        self._done = threading.Condition()
        self._go = threading.Event()  # an exposure runs, or a flush waits: write now
        self._thread = threading.Thread(
            target=self._work, name=f"zarr-writer-{self.store_path.stem[:8]}", daemon=True
        )
        self._thread.start()
        _LIVE_WRITERS.add(self)

    @property
    def pending(self) -> int:
        """Frames submitted and not yet on disk."""
        return self.count - self.written

    def submit(self, image: NDArray) -> int:
        """Queue ``image`` as the next frame; return its index (blocks only if full)."""
        if image.shape != self.frame_shape or image.dtype != self.dtype:
            raise ValueError(
                f"frame of shape {image.shape} {image.dtype} does not match the store's "
                f"{self.frame_shape} {self.dtype}: camera ROI/binning changed mid-run"
            )
        if self.error is not None:
            raise RuntimeError(f"writing {self.store_path} failed: {self.error}") from self.error
        index = self.count
        item = (time.monotonic(), image)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.backpressure += 1
            logger.warning(
                "zarr writer of %s is %d frames behind: acquisition waits for the disk",
                self.store_path.name,
                self._queue.maxsize,
            )
            self._go.set()  # the queue is full: holding frames would only make it wait longer
            self._queue.put(item)
        self.count = index + 1
        return index

    def try_submit(self, image: NDArray) -> int | None:
        """`submit` without waiting: the frame's index, or None if the queue is full."""
        if self._queue.full():
            return None
        return self.submit(image)

    def welcome(self) -> None:
        """An exposure starts (the plan waits for it): queued frames may be written now.

        Not while the closed loop computes a mask during it (`EXPOSURES.mask_pending`):
        the frames then go with the next exposure (the stimulation's; decision 0069).
        """
        if not EXPOSURES.mask_pending:
            self._go.set()

    @property
    def may_write(self) -> bool:
        """Whether held frames may be written now (an exposure welcomed them, a flush)."""
        return self._go.is_set()

    def append(self, image: NDArray) -> int:
        """Write ``image`` as the next frame and wait until it is on disk; its index."""
        index = self.submit(image)
        self.flush()
        return index

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted frame is on disk; False on timeout. Raises on failure."""
        target = self.count
        self._go.set()
        with self._done:
            ok = self._done.wait_for(
                lambda: self.written >= target or self.error is not None, timeout
            )
        if self.error is not None:
            raise RuntimeError(f"writing {self.store_path} failed: {self.error}") from self.error
        return ok

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop the thread; False if frames were still queued."""
        ok = self.flush(timeout) if self.error is None else False
        self._go.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._trim()
        return ok

    def settle(self, timeout: float | None = None) -> bool:
        """`flush`, then trim the array's shape to the frames written.

        Readers then see no fill frames at its end. A stop document is recorded after
        this, also for a run that ends without unstaging its camera (a RunEngine ``halt``).
        """
        ok = self.flush(timeout)
        if ok:
            self._trim()
        return ok

    def _trim(self) -> None:
        with self._shape_lock:
            if self.error is None and self.capacity != self.written:
                h, w = self.frame_shape
                self._array.resize((self.written, 1, h, w))
                self.capacity = self.written

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            first = batch[0]
            if first is not None and (wait := first[0] + self.hold_s - time.monotonic()) > 0:
                self._go.wait(wait)  # until an exposure starts (see the class docstring)
            while len(batch) < _WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            frames = [item[1] for item in batch if item is not None]
            if frames and self.error is None:
                try:
                    self._write(frames)
                except Exception as exc:  # disk full, permissions: stop, keep the reason
                    logger.exception("writing frames to %s failed", self.store_path)
                    self.error = exc
            with self._done:
                if self.written >= self.count:
                    self._go.clear()  # the next frame waits for the next exposure
                self._done.notify_all()
            if stop:
                return
            if frames:
                del batch, frames
                give_back_freed_memory()  # what was just freed: resident memory stays flat

    def _write(self, frames: list[NDArray]) -> None:
        start, stop = self.written, self.written + len(frames)
        h, w = self.frame_shape
        with self._shape_lock:
            if stop > self.capacity:
                self.capacity = grown_length(stop)
                self._array.resize((self.capacity, 1, h, w))
            self._array[start:stop, 0] = np.stack(frames) if len(frames) > 1 else frames[0][None]
        with self._done:
            self.written = stop


def frame_compressor() -> BloscCodec:
    """Blosc LZ4 with bit shuffling, the frames' compression.

    Measured on simulated 512x512 uint16 frames (docs/benchmarks.md): 2.1 ms of CPU per
    frame and 2.97x smaller, against zarr's default Zstd (level 0) 3.9 ms and 2.75x, and
    1.1 ms uncompressed; on 2 cores every ms the writer thread spends holding the
    interpreter is taken from acquisition. NGFF readers (napari, Fiji) read Blosc.
    """
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


_WRITE_BATCH = 16  # frames written at once when the writer is behind
GROW_FRAMES = 256
"""The array's shape grows this many frames ahead of the frames written."""


def grown_length(n: int) -> int:
    """The next multiple of `GROW_FRAMES` above ``n``: what a frame array grows to.

    An array of that length holds ``n`` frames and frame index ``n``. A resize rewrites
    the array's metadata, so arrays written frame by frame (raw frames, label images)
    grow in steps.
    """
    return (n // GROW_FRAMES + 1) * GROW_FRAMES


def frames_written(array_path: Path) -> int:
    """Frames on disk in the array at ``array_path``: its leading run of stored chunks.

    After `ZarrFrameWriter.close` that is the array's length; after a killed process the
    shape may run ahead of the frames (it grows in steps), so the chunks are counted:
    one chunk per frame, keys ``c/<t>/0/0/0`` (zarr v3's default key encoding, which the
    writer uses).
    """
    array = zarr.open_array(array_path, mode="r")
    n = int(array.shape[0])
    chunks = Path(array_path) / "c"
    if not chunks.is_dir():
        return 0
    present = {int(p.name) for p in chunks.iterdir() if p.name.isdigit()}
    count = 0
    while count < n and count in present:
        count += 1
    return count


_LIVE_WRITERS: weakref.WeakSet[ZarrFrameWriter] = weakref.WeakSet()


def frames_on_disk(timeout: float | None = None) -> bool:
    """Wait until every frame submitted to any writer in this process is on disk.

    A run's recorder calls it before it records the stop document, so a stored stop
    never announces frames that are still queued. False if ``timeout`` (s) ran out.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    for writer in list(_LIVE_WRITERS):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            if not writer.settle(left):
                return False
        except RuntimeError:
            continue  # a failed writer has logged its error; nothing more will land
    return True
