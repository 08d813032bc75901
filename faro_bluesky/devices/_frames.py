"""In-memory handle on the camera's latest frames.

The closed-loop analyzer must never wait for a disk round trip (ARCHITECTURE decision 11),
so every frame the camera writes is also kept here, keyed exactly as the documents
address it: the zarr array's URI (the StreamResource ``uri``) and the index along its
first axis (the StreamDatum ``indices``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psygnal import Signal

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera frame as written to disk."""

    uri: str
    """URI of the zarr array the frame was written to (the StreamResource ``uri``)."""
    index: int
    """Index of the frame along the array's first axis (the StreamDatum index)."""
    image: NDArray[np.integer]
    """The pixels, ``(height, width)``."""
    timestamp: float
    """Wall-clock time (``time.time()``) when the exposure ended."""
    exposure_ms: float
    """Exposure time in ms."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Anything else known at acquisition (e.g. the channel preset)."""


class FrameCache:
    """Thread-safe ring buffer of the latest frames, with a signal per new frame.

    ``frame_added`` is emitted on the writer thread; listeners must return quickly.
    """

    frame_added = Signal(Frame)
    """Emits the `Frame` just written to disk."""

    def __init__(self, maxlen: int = 64) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self.maxlen = maxlen
        self._frames: OrderedDict[tuple[str, int], Frame] = OrderedDict()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        _LIVE_CACHES.add(self)

    def add(self, frame: Frame) -> None:
        """Keep ``frame``, dropping the oldest one beyond ``maxlen``, and announce it."""
        with self._lock:
            self._frames[(frame.uri, frame.index)] = frame
            while len(self._frames) > self.maxlen:
                self._frames.popitem(last=False)
            self._latest = frame
        self.frame_added.emit(frame)
        for listener in tuple(_READOUT_LISTENERS):
            try:
                listener(frame)
            except Exception:  # a listener never costs a frame
                logger.exception("a readout listener failed")

    def get(self, uri: str, index: int) -> Frame | None:
        """Return the frame at ``index`` of array ``uri``, or None if no longer kept."""
        with self._lock:
            return self._frames.get((uri, index))

    @property
    def latest(self) -> Frame | None:
        """The most recent frame, or None before the first."""
        return self._latest

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


_LIVE_CACHES: weakref.WeakSet[FrameCache] = weakref.WeakSet()
_READOUT_LISTENERS: list[Callable[[Frame], None]] = []


def on_readout(listener: Callable[[Frame], None]) -> Callable[[], None]:
    """Call ``listener(frame)`` with every frame any camera of this process reads out.

    Called on the camera's acquisition path the moment the frame is in memory (before
    its event exists), so it must return at once: the analyzer posts the frame to its
    own thread, to segment it while the run composes the frame's event and exposes the
    next one. Returns the function that removes the listener.
    """
    _READOUT_LISTENERS.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _READOUT_LISTENERS.remove(listener)

    return remove


def find_frame(uri: str, index: int) -> Frame | None:
    """The frame at ``index`` of array ``uri`` if any live `FrameCache` still holds it.

    Lets a document consumer (the analyzer) take pixels from memory when the camera is in
    this process, and fall back to reading the zarr store otherwise (replay), with one
    code path.
    """
    for cache in list(_LIVE_CACHES):
        frame = cache.get(uri, index)
        if frame is not None:
            return frame
    return None
