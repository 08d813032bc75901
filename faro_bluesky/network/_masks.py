"""`RemoteMasks`: the plan's mask provider for an analyzer in another process or machine.

``optogenetic_plan(..., analyzer=RemoteMasks("tcp://gpu-box:5579", camera=scope.camera))``
takes its stimulation masks from an `AnalyzerService` exactly as from an in-process
`Analyzer`: the plan's mask facet awaits `get_mask(fov, t)` on the RunEngine's loop, with
the same timeout, and a late mask fires blank and is recorded as missed.

Two 0MQ DEALER sockets connect to the service's ROUTER. One, owned by a thread of its own
running an asyncio loop, says hello and takes the masks in (put on a `MaskBoard`, which
wakes the plan's wait on the RunEngine's loop). The other sends the camera's frames, from
the thread that announces them (the RunEngine's), without waiting: zero-copy, ~50 µs, and
the pixels are on their way before the frame's event document exists, so they usually
reach the service before the event does (its two hops go through the proxy). A frame that
does not fit in that socket's queue is dropped and counted; the service then reads it from
disk. DEALER/ROUTER rather than publish/subscribe: masks and frames are queued until the
other side is there, never dropped because a subscription was late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from numpy.typing import NDArray

from ..analysis import MaskBoard
from ..devices import Camera, Frame, FrameCache
from ._wire import HELLO, MASK, READY, RUN, as_facts, decode_mask, encode_frame, pack, unpack

logger = logging.getLogger(__name__)


class RemoteMasks:
    """Stimulation masks from an `AnalyzerService`; pass it as the plan's ``analyzer``.

    Parameters
    ----------
    address : str
        The service's link address (``faro-bluesky analyzer --bind``), e.g.
        ``tcp://gpu-box:5579``.
    camera : Camera or FrameCache, optional
        Send this camera's frames to the service as they are taken (the analyzer needs
        the pixels). Without it, the service must read them from the run's zarr store
        (same machine or a shared disk), a few ms after each frame.
    mask_timeout : float, optional
        Seconds the plan waits for a mask; default: the remote analyzer's.
    connect_timeout : float
        Seconds to wait for the service to answer; the constructor raises after that.
    max_queued_frames : int
        Frames queued for sending before new ones are dropped (the service is slow or
        gone).

    """

    def __init__(
        self,
        address: str,
        *,
        camera: Camera | FrameCache | None = None,
        mask_timeout: float | None = None,
        connect_timeout: float = 10.0,
        max_queued_frames: int = 64,
    ) -> None:
        self.address = address
        self.board = MaskBoard()
        self.frames_sent = 0
        self.frames_dropped = 0
        self._facts: dict[str, Any] = {}
        self._run: str | None = None
        self._following: set[str] = set()
        self._runs_changed = threading.Condition()
        self._closed = False
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run_loop, name="faro-masks", daemon=True)
        self._thread.start()
        if not self._ready.wait(connect_timeout):
            self.close()
            raise TimeoutError(
                f"no analyzer answered at {address} within {connect_timeout:g} s: start one "
                f"with `faro-bluesky analyzer --follow PROXY_OUT --bind {address}`"
            )
        self.mask_timeout = float(
            mask_timeout if mask_timeout is not None else self._facts["mask_timeout"]
        )
        self._frames = camera.frames if isinstance(camera, Camera) else camera
        self._frame_sock: zmq.Socket | None = None
        self._frame_lock = threading.Lock()
        if self._frames is not None:
            self._frame_sock = zmq.Context.instance().socket(zmq.DEALER)
            self._frame_sock.setsockopt(zmq.LINGER, 0)
            self._frame_sock.setsockopt(zmq.SNDHWM, max_queued_frames)
            self._frame_sock.connect(address)
            self._frames.frame_added.connect(self._on_frame)

    # -------------------------------------------------------- mask provider
    @property
    def provides_masks(self) -> bool:
        """Whether the remote analyzer computes masks (it has a stimulator)."""
        return bool(self._facts.get("provides_masks", False))

    async def get_mask(self, fov: int, t: int) -> NDArray[np.bool_] | bool:
        """The mask of frame (fov, t) of the current run, once the service sent it."""
        return await self.board.get(fov, t)

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Documents of the run (the plan subscribes us): a new run forgets old masks."""
        if name == "start" and doc.get("uid") != self._run:
            self._run = str(doc["uid"])
            self.board.reset()

    # the remote analyzer's requirements, checked by the plan before the run opens
    @property
    def required_metadata(self) -> frozenset[str]:
        """Phase metadata every phase needs (the remote analyzer's)."""
        return self._facts.get("required_metadata", frozenset())

    @property
    def required_channels(self) -> frozenset[str]:
        """Channel presets the remote segmenter and features read."""
        return self._facts.get("required_channels", frozenset())

    @property
    def required_ref_channels(self) -> frozenset[str]:
        """Channel presets the remote reference features read."""
        return self._facts.get("required_ref_channels", frozenset())

    @property
    def required_stim_metadata(self) -> frozenset[str]:
        """Phase metadata stimulating phases need (the remote stimulator's)."""
        return self._facts.get("required_stim_metadata", frozenset())

    @property
    def closed(self) -> bool:
        """True after `close` (the plan then refuses it)."""
        return self._closed

    def following(self, run_uid: str, timeout: float | None = 0.0) -> bool:
        """Whether the service's analyzer received the start of run ``run_uid``.

        A service started after a run began never sees it (publish/subscribe keeps no
        history): every mask of such a run is missed. Waits up to ``timeout`` s.
        """
        with self._runs_changed:
            return self._runs_changed.wait_for(lambda: run_uid in self._following, timeout)

    def queue_stats(self) -> dict[str, Any]:
        """For status displays: frames sent and dropped, mask waits."""
        return {
            "frames_sent": self.frames_sent,
            "frames_dropped": self.frames_dropped,
            "mask_waits": self.board.waiting(),
        }

    # ---------------------------------------------------------- link thread
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._link())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _link(self) -> None:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.address)
            await sock.send_multipart([HELLO, pack({"version": 1})])
            while True:
                kind, *rest = await sock.recv_multipart()
                try:
                    self._on_message(kind, rest)
                except Exception:
                    logger.exception("mask link: a malformed message was dropped")
        finally:
            sock.close(0)
            ctx.term()

    def _on_message(self, kind: bytes, rest: list[bytes]) -> None:
        if kind == MASK:
            run, fov, t, mask = decode_mask(rest[0], rest[1])
            if run != self._run:
                return  # another run's (the previous one, still being analysed)
            if mask is None:
                self.board.skip(fov, t)
            else:
                self.board.put(fov, t, mask)
        elif kind == RUN:
            with self._runs_changed:
                self._following.add(str(unpack(rest[0])["run"]))
                self._runs_changed.notify_all()
        elif kind == READY:
            self._facts = as_facts(unpack(rest[0]))
            self._ready.set()

    def _on_frame(self, frame: Frame) -> None:
        """A new camera frame (the RunEngine's thread): send it, never wait."""
        with self._frame_lock:
            sock = self._frame_sock
            if sock is None:
                return
            try:
                sock.send_multipart(encode_frame(frame), flags=zmq.DONTWAIT, copy=False)
            except zmq.Again:
                self.frames_dropped += 1
            else:
                self.frames_sent += 1
                return
        if self.frames_dropped == 1 or self.frames_dropped % 100 == 0:
            logger.warning(
                "%d frame(s) not sent to the analyzer at %s: it is slow or gone (it reads "
                "them from disk if it can)",
                self.frames_dropped,
                self.address,
            )

    def close(self) -> None:
        """Stop sending frames, release mask waits and close the link."""
        if self._closed:
            return
        self._closed = True
        frames = getattr(self, "_frames", None)
        if frames is not None:
            frames.frame_added.disconnect(self._on_frame)
            with self._frame_lock:
                if self._frame_sock is not None:
                    self._frame_sock.close(0)
                    self._frame_sock = None
        self.board.cancel("the mask link was closed")
        task = self._task
        if task is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(5.0)

    def __enter__(self) -> RemoteMasks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteMasks({self.address!r})"
