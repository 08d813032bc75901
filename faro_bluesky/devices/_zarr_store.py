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

logger = logging.getLogger(__name__)


def ome_image_attrs(array_name: str, pixel_size_um: float, name: str) -> dict:
    """NGFF 0.5 ``ome`` attributes for an image group holding ``array_name`` (t, c, y, x)."""
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "t", "type": "time"},
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": array_name,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, 1.0, pixel_size_um, pixel_size_um]}
                        ],
                    }
                ],
            }
        ],
    }


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
    resize when it falls behind. The queue is bounded (``max_queued`` frames): when it is
    full `submit` blocks, which is counted in `backpressure` and never drops a frame.
    The array grows just before its new chunks are written (zarr writes only inside the
    shape), so a reader may see the newest frames as fill value for the few ms of a write;
    a process killed mid-run loses at most the frames still queued (`pending`), which its
    raw document log announces and recovery discards (docs/durability.md).
    """

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
            fill_value=0,
            dimension_names=("t", "c", "y", "x"),
        )
        self.max_queued = max_queued
        self.count = 0
        """Frames submitted (the next frame's index)."""
        self.written = 0
        """Frames on disk."""
        self.backpressure = 0
        """How many submits found the queue full and had to wait for the disk."""
        self.error: BaseException | None = None
        """The write failure that stopped this writer, if any."""
        self._queue: queue.Queue[NDArray | None] = queue.Queue(max_queued)
        self._done = threading.Condition()
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
        try:
            self._queue.put_nowait(image)
        except queue.Full:
            self.backpressure += 1
            logger.warning(
                "zarr writer of %s is %d frames behind: acquisition waits for the disk",
                self.store_path.name,
                self._queue.maxsize,
            )
            self._queue.put(image)
        self.count = index + 1
        return index

    def try_submit(self, image: NDArray) -> int | None:
        """`submit` without waiting: the frame's index, or None if the queue is full."""
        if self._queue.full():
            return None
        return self.submit(image)

    def append(self, image: NDArray) -> int:
        """Write ``image`` as the next frame and wait until it is on disk; its index."""
        index = self.submit(image)
        self.flush()
        return index

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted frame is on disk; False on timeout. Raises on failure."""
        target = self.count
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
        self._queue.put(None)
        self._thread.join(timeout)
        return ok

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            frames = [f for f in batch if f is not None]
            if frames and self.error is None:
                try:
                    self._write(frames)
                except Exception as exc:  # disk full, permissions: stop, keep the reason
                    logger.exception("writing frames to %s failed", self.store_path)
                    self.error = exc
            with self._done:
                self._done.notify_all()
            if stop:
                return

    def _write(self, frames: list[NDArray]) -> None:
        start, stop = self.written, self.written + len(frames)
        h, w = self.frame_shape
        self._array.resize((stop, 1, h, w))
        self._array[start:stop, 0] = np.stack(frames) if len(frames) > 1 else frames[0][None]
        with self._done:
            self.written = stop


_WRITE_BATCH = 16  # frames written per resize when the writer is behind


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
            if not writer.flush(left):
                return False
        except RuntimeError:
            continue  # a failed writer has logged its error; nothing more will land
    return True
