"""`FrameGate`: hands documents on in order, each frame's event only once its pixels are here.

A remote analyzer gets a frame's event from the proxy and its pixels another way: sent by
the acquisition process as the frame is taken (`RemoteMasks(camera=...)`), or read from
the run's zarr store when both processes share a disk. Neither is ordered with the event:
the pixels usually arrive first (one hop, sent before the event exists), the zarr chunk
a few ms after the event (the camera's writer thread). The gate holds an event whose
frame is missing, and every document after it (the analyzer needs them in order), until
the frame arrives or ``timeout`` s have passed; then the event goes on regardless and
the analyzer records that frame's read failure (its mask is reported missing at once,
so the plan does not wait for it).

Received pixels go into a `FrameCache` of this process, where the analyzer's frame reader
looks first (`faro_bluesky.devices.find_frame`): it never touches the disk for them. A
frame read from disk is put there too: zarr chunks are written whole (write, then
rename), so a chunk that exists is complete; the array is re-opened for each read, as
its shape grows while the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import zarr

from ..devices import Frame, FrameCache, path_from_uri

logger = logging.getLogger(__name__)

Doc = Mapping[str, Any]
ZARR = "application/x-zarr"


class FrameGate:
    """A document callback that forwards to ``downstream`` once each event's frame is here.

    Runs on one asyncio loop (the follower's): documents and `add_frame` are called
    there, and waits are timers on it, never blocking it.

    Parameters
    ----------
    downstream : callable
        ``downstream(name, doc)``: the analyzer (or anything taking documents).
    timeout : float
        Longest an event waits for its frame (s).
    poll_s : float
        How often the zarr store is checked for a missing frame (s); None: never.
    cache_frames : int
        Frames kept in memory for the analyzer (a lagging analyzer reads older ones from
        disk, with a stale array shape: keep this above the frames it may lag behind).

    """

    def __init__(
        self,
        downstream: Callable[[str, Doc], Any],
        *,
        timeout: float = 2.0,
        poll_s: float | None = 0.005,
        cache_frames: int = 256,
    ) -> None:
        self.downstream = downstream
        self.timeout = timeout
        self.poll_s = poll_s
        self.cache = FrameCache(cache_frames)
        self.from_network = 0
        """Frames whose pixels were received."""
        self.from_disk = 0
        """Frames read from the zarr store (not received in time)."""
        self.missing = 0
        """Frames whose event went on without them (timeout)."""
        self.held_ms = 0.0
        """Total time events waited for their frames."""
        self._pending: deque[tuple[str, Doc]] = deque()
        self._resources: dict[str, str] = {}
        self._datums: dict[tuple[str, int], tuple[str, int]] = {}
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- inputs
    def __call__(self, name: str, doc: Doc) -> None:
        """Take the next document of the stream."""
        if name == "stream_resource":
            if doc.get("mimetype") == ZARR:  # the cameras' stores; other files: not waited for
                self._resources[doc["uid"]] = doc["uri"]
        elif name == "stream_datum":
            uri = self._resources.get(doc["stream_resource"])
            if uri is not None:
                start, stop = doc["seq_nums"]["start"], doc["seq_nums"]["stop"]
                for k in range(stop - start):
                    key = (doc["descriptor"], start + k)
                    self._datums[key] = (uri, doc["indices"]["start"] + k)
        self._pending.append((name, doc))
        self._drain()

    def add_frame(self, frame: Frame) -> None:
        """Pixels of a frame, received from the acquisition process."""
        self.from_network += 1
        self.cache.add(frame)
        if self._pending:
            self._drain()

    # ----------------------------------------------------------------- gating
    def _frames_of(self, name: str, doc: Doc) -> list[tuple[str, int]]:
        if name == "event":
            seqs = [doc["seq_num"]]
        elif name == "event_page":
            seqs = list(doc["seq_num"])
        else:
            return []
        keys = ((doc["descriptor"], s) for s in seqs)
        return [self._datums[k] for k in keys if k in self._datums]

    def _missing(self, frames: list[tuple[str, int]], disk: bool) -> list[tuple[str, int]]:
        out = []
        for uri, index in frames:
            if self.cache.get(uri, index) is None and not (disk and self._read(uri, index)):
                out.append((uri, index))
        return out

    def _drain(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        while self._pending:
            name, doc = self._pending[0]
            frames = self._frames_of(name, doc)
            if frames:
                missing = self._missing(frames, disk=self.poll_s is not None)
                if missing:
                    if self._since is None:
                        self._since = now
                    left = self._since + self.timeout - now
                    if left > 0:
                        delay = left if self.poll_s is None else min(self.poll_s, left)
                        loop = asyncio.get_running_loop()
                        self._timer = loop.call_later(delay, self._drain)
                        return
                    self.missing += len(missing)
                    logger.warning(
                        "no pixels for frame %s within %g s: its event goes on without them",
                        missing,
                        self.timeout,
                    )
                if self._since is not None:
                    self.held_ms += (now - self._since) * 1000.0
                self._since = None
                for key in ((doc["descriptor"], s) for s in _seqs(name, doc)):
                    self._datums.pop(key, None)
            self._pending.popleft()
            self.downstream(name, doc)

    def _read(self, uri: str, index: int) -> bool:
        """Put frame ``index`` of ``uri`` into the cache if its chunk is on disk."""
        try:
            path = path_from_uri(uri)
            array = zarr.open_array(path, mode="r")
            if index >= array.shape[0]:
                return False
            key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
            if not (path / key).exists():
                return False  # resized, not yet written (it would read as fill value)
            image = np.asarray(array[index]).reshape(array.shape[-2:])
        except Exception:  # not there (yet), or not a store this process can read
            return False
        self.from_disk += 1
        self.cache.add(Frame(uri, index, image, timestamp=math.nan, exposure_ms=math.nan))
        return True

    def stats(self) -> dict[str, int | float]:
        """Counters for a status line: frames received, read from disk, missing, held ms."""
        return {
            "from_network": self.from_network,
            "from_disk": self.from_disk,
            "missing": self.missing,
            "held_ms": round(self.held_ms, 1),
            "pending_documents": len(self._pending),
        }


def _seqs(name: str, doc: Doc) -> list[int]:
    return [doc["seq_num"]] if name == "event" else list(doc["seq_num"])
