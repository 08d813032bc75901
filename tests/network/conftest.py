"""Real 0MQ pieces on loopback: bluesky's proxy and faro-bluesky commands as child processes.

Startup is the slow part (a child imports faro-bluesky in seconds on a busy machine), so
one session fixture starts the proxy, then the `status --follow` and `analyzer` commands
at once, and each test waits only for the child it uses.

0MQ subscriptions take effect asynchronously: documents published before a follower's
subscription reached the proxy are dropped. `warm_up` therefore runs empty runs until the
far side has seen one (waiting on what it reports, never on a guessed delay); after that
the stream is complete and in order.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bluesky.plans as bp
import pytest

from faro_bluesky.network import ProxyProcess

HERE = Path(__file__).parent
CLI = Path(sys.executable).parent / "faro-bluesky"
START_TIMEOUT = 120.0  # a child's imports on a loaded 2-core machine


class Child:
    """A child process whose output lines are collected on a thread, to wait on."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._ended = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """The first output line matching ``pattern``, waiting up to ``timeout`` s."""
        rx = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next((m for line in self.lines if (m := rx.search(line))), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self._ended, timeout)
            return found()

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user stops it; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


class Network:
    """The proxy and the two commands following it."""

    def __init__(self) -> None:
        self.proxy = ProxyProcess()
        out = self.proxy.out_address
        self.status = Child([str(CLI), "status", "--follow", out])
        self.analyzer = Child(
            [
                str(CLI),
                "analyzer",
                "--follow",
                out,
                "--bind",
                "tcp://127.0.0.1:0",
                "--analyzer",
                f"{HERE / '_remote_analyzer.py'}:make",
            ]
        )

    def link(self) -> str:
        """The analyzer's link address, once it serves."""
        match = self.analyzer.wait_for(r"masks served at (tcp://\S+)", START_TIMEOUT)
        assert match is not None, self.analyzer.output
        return match[1]

    def close(self) -> None:
        for child in (self.status, self.analyzer):
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        self.proxy.close()


@pytest.fixture(scope="session")
def network():
    net = Network()
    yield net
    net.close()


def warm_up(RE, seen: Callable[[str], bool], timeout: float = START_TIMEOUT) -> None:
    """Run empty runs until ``seen(run_uid)`` says the far side received one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (uid,) = RE(bp.count([])).run_start_uids
        if seen(uid):
            return
    raise TimeoutError(f"nothing published reached the follower within {timeout:g} s")
