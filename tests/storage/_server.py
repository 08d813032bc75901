"""A real ``faro-bluesky serve`` process over a catalog directory, on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

KEY = "faroTestKey42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(path: Path) -> Iterator[str]:
    """Serve the catalog in ``path`` (API key `KEY`) until the block ends; its URL."""
    port = _free_port()
    script = Path(sys.executable).parent / "faro-bluesky"
    proc = subprocess.Popen(
        [str(script), "serve", str(path), "--port", str(port)],
        env={**os.environ, "TILED_SINGLE_USER_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)  # polling the server for readiness, with a deadline
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
