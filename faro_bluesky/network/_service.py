"""`AnalyzerService`: the closed-loop `Analyzer` in its own process, fed by the 0MQ stream.

Documents come from the proxy, as any follower gets them (bluesky's `RemoteDispatcher`,
through a `FrameGate` that holds each frame's event until its pixels are here). The
link to the acquisition process is one 0MQ ROUTER socket this service binds: a
`RemoteMasks` there connects to it, sends each frame's pixels as the camera takes it,
and gets back every mask the analyzer publishes, keyed by run, FOV and t. Everything
runs on the follower's asyncio loop; masks leave the analyzer's thread through
``call_soon_threadsafe``, so the analyzer code is the in-process one, unchanged.

Which run a mask belongs to: the analyzer resets its `MaskBoard` when it takes up a run
(after finishing the previous one), in the order the start documents reached it, so the
service's board pairs each reset with the next start document it passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio

from ..analysis import Analyzer, MaskBoard
from ..schema import MaskTimes
from ._follow import Follower
from ._gate import FrameGate
from ._wire import FRAME, HELLO, READY, RUN, decode_frame, encode_mask, facts, pack

logger = logging.getLogger(__name__)


class _RelayBoard(MaskBoard):
    """The analyzer's mask board, also sending each mask (or skip) over the link."""

    def __init__(self, service: AnalyzerService) -> None:
        super().__init__()
        self._service = service

    def put(self, fov: int, t: int, mask: Any, times: MaskTimes | None = None) -> None:
        super().put(fov, t, mask, times)  # the times stay here: the link sends masks only
        self._service._relay(fov, t, mask)

    def skip(self, fov: int, t: int) -> None:
        super().skip(fov, t)
        self._service._relay(fov, t, None)

    def reset(self) -> None:
        super().reset()
        self._service._next_run()


class AnalyzerService:
    """Run ``analyzer`` on the documents published to a proxy; send its masks back.

    Parameters
    ----------
    analyzer : Analyzer
        The closed-loop analyzer (with a stimulator, for masks). The service replaces its
        mask board with one that also sends; it does not close it.
    documents : str
        The proxy's output address (``tcp://host:5578``).
    bind : str
        Where `RemoteMasks` connect (``tcp://*:5579``; port 0: a free one, see `address`).
    frame_timeout : float
        Longest a frame's event waits for the frame's pixels (s).
    cache_frames : int
        Frames kept in memory for the analyzer.
    prefix : bytes
        Only documents published with this prefix (``publish(..., prefix=)``).

    """

    def __init__(
        self,
        analyzer: Analyzer,
        documents: str,
        *,
        bind: str = "tcp://127.0.0.1:0",
        frame_timeout: float = 2.0,
        cache_frames: int = 256,
        prefix: bytes = b"",
    ) -> None:
        self.analyzer = analyzer
        self.documents = documents
        self.bind = bind
        self.address: str | None = None
        """The link's bound address (known after `start`)."""
        self.error: BaseException | None = None
        self.masks_sent = 0
        self.documents_received = 0
        self.gate = FrameGate(self._deliver, timeout=frame_timeout, cache_frames=cache_frames)
        analyzer.board = _RelayBoard(self)
        self._runs: deque[str] = deque()  # start documents passed on, not yet taken up
        self._run = ""  # the run the analyzer is working on
        self._peers: set[bytes] = set()
        self._sock: zmq.asyncio.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bound = threading.Event()
        self._follower = Follower(
            documents, [self._receive], prefix=prefix, tasks=[self._serve], name="faro-service"
        )

    # ------------------------------------------------------------------ control
    def start(self, timeout: float = 10.0) -> AnalyzerService:
        """Bind the link, follow the documents; return once both are up."""
        self._follower.start(timeout)
        if not self._bound.wait(timeout) or self.error is not None:
            self._follower.stop()
            raise ConnectionError(f"cannot bind the analyzer link at {self.bind}: {self.error}")
        logger.info("analyzer service: documents from %s, link at %s", self.documents, self.address)
        return self

    def stop(self) -> None:
        """Stop following and close the link (the analyzer stays open)."""
        self._follower.stop()

    def serve_forever(self) -> None:
        """Block until `stop` (from another thread) or Ctrl-C."""
        try:
            while self._follower.alive:
                self._follower.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        if self._follower.error is not None:
            raise ConnectionError(f"following {self.documents} failed") from self._follower.error

    def __enter__(self) -> AnalyzerService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Documents received, masks sent, links connected, and the frame gate's counters."""
        return {
            "documents": self.documents_received,
            "masks_sent": self.masks_sent,
            "links": len(self._peers),
            **self.gate.stats(),
        }

    # --------------------------------------------------------- follower loop
    def _receive(self, name: str, doc: Mapping[str, Any]) -> None:
        self.documents_received += 1
        self.gate(name, doc)

    def _deliver(self, name: str, doc: Mapping[str, Any]) -> None:
        """A document leaving the gate: to the analyzer (a start is also announced)."""
        if name == "start":
            self._runs.append(str(doc["uid"]))
            self._broadcast([RUN, pack({"run": str(doc["uid"])})])
        self.analyzer(name, doc)

    async def _serve(self) -> None:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            try:
                sock.bind(self.bind)
            except zmq.ZMQError as exc:
                self.error = exc
                return
            self.address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._sock, self._loop = sock, asyncio.get_running_loop()
            self._bound.set()
            while True:
                parts = await sock.recv_multipart(copy=False)
                try:
                    self._on_message([p.bytes if i < 3 else p.buffer for i, p in enumerate(parts)])
                except Exception:
                    logger.exception("analyzer link: a malformed message was dropped")
        finally:
            self._sock = None
            self._bound.set()
            sock.close(0)
            ctx.term()

    def _on_message(self, parts: list[Any]) -> None:
        peer, kind = parts[0], parts[1]
        if kind == FRAME:
            self.gate.add_frame(decode_frame(parts[2], parts[3]))
        elif kind == HELLO:  # masks go to the links that said hello (not to frame senders)
            self._peers.add(peer)
            self._send(peer, [READY, pack(facts(self.analyzer))])
            logger.info("analyzer link: a plan connected")

    def _send(self, peer: bytes, parts: list[Any]) -> None:
        sock = self._sock
        if sock is None:
            return
        future = sock.send_multipart([peer, *parts], flags=zmq.DONTWAIT)
        if future.exception() is not None:  # that link is gone or full: it misses this
            logger.debug("analyzer link: could not send %s", parts[0])

    def _broadcast(self, parts: list[Any]) -> None:
        for peer in list(self._peers):
            self._send(peer, parts)

    # ------------------------------------------------------- analyzer thread
    def _next_run(self) -> None:
        """The analyzer took up its next run (its board was reset)."""
        try:
            self._run = self._runs.popleft()
        except IndexError:
            self._run = ""

    def _relay(self, fov: int, t: int, mask: Any) -> None:
        message = encode_mask(self._run, fov, t, mask)
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the service stopped
            loop.call_soon_threadsafe(self._sent, message)

    def _sent(self, message: list[Any]) -> None:
        self.masks_sent += 1
        self._broadcast(message)
