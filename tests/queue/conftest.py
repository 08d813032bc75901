"""A real queue server on loopback, started as a user does: ``faro-bluesky queue``.

The command starts Valkey, the RE Manager (its worker opens the session on the test
profile in ``profile/``: a 48×64 simulated camera and a `Gate` the tests open) and the
HTTP server, and publishes documents to a 0MQ proxy the fixture starts. Starting the
worker takes seconds, so one module fixture starts it once on free ports, and stops it
with SIGINT, as Ctrl-C would. Every wait asks a server (the API's wait helpers, the
gate's TCP connection, the command's "ready" line), never sleeps.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from faro_bluesky.network import ProxyProcess, follow
from faro_bluesky.queue import submit

HERE = Path(__file__).parent
CLI = Path(sys.executable).parent / "faro-bluesky"
TIMEOUT = 120.0  # generous: a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GateServer:
    """The test's side of the profile's `Gate`: each read of the gate is a connection."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.socket.settimeout(TIMEOUT)
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"

    def next_read(self) -> tuple[socket.socket, str]:
        """Wait for the plan to read the gate; the open connection and what it said."""
        conn, _ = self.socket.accept()
        conn.settimeout(TIMEOUT)
        line = conn.makefile().readline().strip()
        return conn, line

    def answer(self, conn: socket.socket) -> None:
        """Let that read finish."""
        with conn:
            conn.sendall(b"go\n")

    def pass_reads(self, n: int) -> None:
        for _ in range(n):
            self.answer(self.next_read()[0])


@dataclass(eq=False)  # hashable: bluesky keeps callbacks in sets
class Documents:
    """What a follower of the proxy received."""

    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        self.docs.append((name, doc))

    def stop_of(self, uid: str) -> dict[str, Any] | None:
        return next((d for n, d in self.docs if n == "stop" and d["run_start"] == uid), None)


class Command:
    """``faro-bluesky queue`` as a user starts it; its output lines collected on a thread."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.proc = subprocess.Popen(
            [str(CLI), "queue", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log.open("w") as log:
            for line in self.proc.stdout:
                self.lines.append(line)
                log.write(line)
                log.flush()
                if line.startswith("Ctrl-C stops it"):  # printed once everything is up
                    self.ready.set()
        self.ready.set()

    def output(self) -> str:
        return self.log.read_text()[-6000:]


@dataclass
class Queue:
    control: str
    api: Any
    http_uri: str
    api_key: str
    gate: GateServer
    remote: Documents
    data: Path

    def http_api(self) -> Any:
        from bluesky_queueserver_api.http import REManagerAPI

        api = REManagerAPI(http_server_uri=self.http_uri, status_polling_period=0.1)
        api.set_authorization_key(api_key=self.api_key)
        return api


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    from bluesky_queueserver_api.zmq import REManagerAPI

    root = tmp_path_factory.mktemp("queue")
    profile = shutil.copytree(HERE / "profile", root / "profile")
    gate = GateServer()
    closed = root / "session-closed"
    old = {name: os.environ.get(name) for name in ("FARO_TEST_GATE", "FARO_TEST_CLOSED")}
    os.environ.update(FARO_TEST_GATE=gate.address, FARO_TEST_CLOSED=str(closed))
    remote = Documents()
    control = f"tcp://127.0.0.1:{free_port()}"
    http_port, key = free_port(), "farotestkey"
    with ProxyProcess() as proxy:
        follower = follow(proxy.out_address, remote)
        args = ["--data", str(root / "data"), "--profile", str(profile), "--control", control]
        args += ["--info", f"tcp://127.0.0.1:{free_port()}", "--publish", proxy.in_address]
        args += ["--http", f"127.0.0.1:{http_port}", "--api-key", key]
        command = Command(args, root / "queue.log")
        api = REManagerAPI(zmq_control_addr=control, status_polling_period=0.1)
        try:
            command.ready.wait(TIMEOUT)
            assert any(line.startswith("Ctrl-C") for line in command.lines), command.output()
            _warm_up(api, remote)
            yield Queue(
                control=control,
                api=api,
                http_uri=f"http://127.0.0.1:{http_port}",
                api_key=key,
                gate=gate,
                remote=remote,
                data=root / "data",
            )
        finally:
            api.close()
            command.proc.send_signal(signal.SIGINT)  # as Ctrl-C in its terminal
            try:
                code = command.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                command.proc.kill()
                raise
            follower.stop()
            gate.socket.close()
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    assert code == 0, command.output()
    # closing the environment closed the worker's session (multiprocessing's exit
    # finalizer): the catalog writer, the analyzer and the devices were released
    assert closed.exists(), command.output()


def _warm_up(api: Any, remote: Documents) -> None:
    """Run bluesky's ``count`` until the follower has seen a whole run.

    0MQ drops what is published before a subscription reaches the proxy; after one run
    seen from start to stop the stream is complete. Also: a stock plan on the profile's
    devices through the queue.
    """
    for _ in range(5):
        handle = submit(api, "count", ["camera"], num=1)
        result = handle.wait(timeout=TIMEOUT)
        uid = result.run_start_uids[0]
        started = any(n == "start" and d["uid"] == uid for n, d in remote.docs)
        if started and _wait_for_stop(api, remote, uid):
            return
    raise AssertionError("the follower never received a whole run from the proxy")


def _wait_for_stop(api: Any, remote: Documents, uid: str) -> bool:
    """Whether the stop document arrives; checked each time the manager's status is read."""
    try:
        api.wait_for_condition(lambda _: remote.stop_of(uid) is not None, timeout=10)
    except TimeoutError:
        return False
    return True
