"""Publishing a RunEngine's documents to a 0MQ proxy, and starting one.

bluesky's own pieces do the work: `bluesky.callbacks.zmq.Publisher` sends each document
to a proxy (`bluesky.callbacks.zmq.Proxy`, or its ``bluesky-0MQ-proxy`` console script),
which fans it out to any number of `RemoteDispatcher` followers. `publish` adds what a
24-hour closed-loop run needs around it: the msgpack serializer of `_wire` (no pickle on
the network), and a guard so a document that cannot be sent is logged instead of
raising into the RunEngine (ARCHITECTURE decision 5; a raising callback aborts the run).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

import zmq
from bluesky.callbacks.zmq import Publisher

from .._process import terminate
from ._wire import pack

logger = logging.getLogger(__name__)

_LINGER_MS = 1000  # a process exiting with the proxy gone waits at most this long
# what bluesky's proxy script prints once it is bound
_PORTS = re.compile(r"Receiving on address (\S+); publishing to address (\S+?)\.?$")
_PUBLISHERS: dict[tuple[int, int], Publisher] = {}
_LOCK = threading.Lock()


class _Guarded:
    """A `Publisher` that logs a failed send instead of raising into the RunEngine."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.failures = 0

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        try:
            self.publisher(name, doc)
        except Exception:
            self.failures += 1
            if self.failures == 1 or self.failures % 1000 == 0:
                logger.exception("could not publish a %s document (%d so far)", name, self.failures)


def publish(RE: Any, address: str, *, prefix: bytes = b"") -> int:
    """Publish every document of ``RE`` to the 0MQ proxy at ``address``; the token.

    ``address`` is the proxy's input (``tcp://host:5577``). Followers subscribe to its
    output with `follow` (or bluesky's ``RemoteDispatcher(..., deserializer=unpack)``).
    Returns the subscription token; `unpublish` with it stops publishing and closes the
    socket. A proxy that is down or slow costs nothing: 0MQ's PUB socket drops what it
    cannot deliver, it never blocks the RunEngine.

    Documents are msgpack (`faro_bluesky.network.unpack` reads them), not bluesky's
    default pickle.
    """
    publisher = Publisher(address, prefix=prefix, serializer=pack)
    # Publisher keeps its socket private; without a linger, an exit with undelivered
    # documents (the proxy gone) would wait for the proxy forever.
    publisher._socket.setsockopt(zmq.LINGER, _LINGER_MS)
    token = RE.subscribe(_Guarded(publisher))
    with _LOCK:
        _PUBLISHERS[(id(RE), token)] = publisher
    return token


def unpublish(RE: Any, token: int) -> None:
    """Stop the publishing `publish` returned ``token`` for, and close its socket."""
    RE.unsubscribe(token)
    with _LOCK:
        publisher = _PUBLISHERS.pop((id(RE), token), None)
    if publisher is not None:
        publisher.close()


class ProxyProcess:
    """bluesky's ``bluesky-0MQ-proxy`` in a child process, on free ports of ``host``.

    ``in_address`` is where RunEngines publish (`publish`), ``out_address`` where
    followers subscribe (`follow`). For a proxy that outlives a session, run the console
    script itself: ``bluesky-0MQ-proxy --in-address 5577 --out-address 5578``.

    Parameters
    ----------
    host : str
        Interface to bind (``127.0.0.1``: this machine only; ``0.0.0.0``: every one).
    timeout : float
        Seconds to wait for the proxy to report its ports.

    """

    def __init__(self, host: str = "127.0.0.1", *, timeout: float = 30.0) -> None:
        script = shutil.which("bluesky-0MQ-proxy", path=os.path.dirname(sys.executable))
        command = [script] if script else [sys.executable, "-m", "bluesky.commandline.zmq_proxy"]
        # no port: bluesky's Proxy binds a random free one and prints it
        endpoint = f"tcp://{host}"
        self.process = subprocess.Popen(
            [*command, "--in-address", endpoint, "--out-address", endpoint],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.in_address, self.out_address = self._read_ports(timeout)

    def _read_ports(self, timeout: float) -> tuple[str, str]:
        found: list[tuple[str, str]] = []
        seen: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                seen.append(line)
                match = _PORTS.search(line)
                if match:
                    found.append((match[1], match[2]))
                    return

        reader = threading.Thread(target=read, daemon=True, name="faro-proxy-ports")
        reader.start()
        reader.join(timeout)
        if not found:
            self.close()
            raise RuntimeError(
                f"bluesky-0MQ-proxy did not report its ports within {timeout:g} s: "
                + "".join(seen).strip()
            )
        # keep draining its output, so a chatty proxy never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True, name="faro-proxy-out").start()
        return found[0]

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def close(self, timeout: float = 5.0) -> None:
        """Stop the proxy process (SIGTERM, then SIGKILL after ``timeout`` s)."""
        terminate(self.process, timeout)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProxyProcess(in_address={self.in_address!r}, out_address={self.out_address!r})"
