"""Shared fixtures: a real RunEngine and a simulated microscope writing to tmp_path."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from bluesky import RunEngine
from event_model import DocumentNames, schema_validators

from faro_bluesky.sim import sim_microscope


def pytest_configure(config):
    """Child processes get Ctrl-C as from a terminal, however this session was started.

    A shell starting a command in the background (``cmd &`` without job control) makes
    it ignore SIGINT, and an ignored signal stays ignored in every child: the CLI tests'
    processes (``status --follow``, ``analyzer``, ``queue``) would then never see the
    Ctrl-C they are sent, and Python installs its KeyboardInterrupt handler only where
    SIGINT is not ignored. Restoring the default here gives children the usual handler.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class DocCollector:
    """Records every document and validates it against the event-model schemas."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict]] = []

    def __call__(self, name: str, doc: dict) -> None:
        schema_validators[DocumentNames[name]].validate(doc)
        self.docs.append((name, doc))

    def names(self) -> list[str]:
        return [n for n, _ in self.docs]

    def of(self, name: str) -> list[dict]:
        return [d for n, d in self.docs if n == name]


@pytest.fixture
def RE():
    engine = RunEngine(context_managers=[], call_returns_result=True)
    yield engine
    if engine.state != "idle":
        engine.halt()
    close_loop(engine.loop)


def close_loop(loop) -> None:
    """Stop a RunEngine's event loop, join its thread and close it (its epoll and pipe fds).

    Every RunEngine runs a new loop on a thread of its own that bluesky never stops; over
    hundreds of tests the open descriptors passed 1024 and `select()` (pexpect) failed.
    """
    from bluesky.run_engine import _ensure_event_loop_running

    thread = getattr(_ensure_event_loop_running, "loop_to_thread", {}).pop(loop, None)
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(5)
        if thread.is_alive():  # a plan still runs there: leave it be
            return
    loop.close()


@pytest.fixture
def docs(RE) -> DocCollector:
    collector = DocCollector()
    RE.subscribe(collector)
    return collector


@pytest.fixture
def scope(RE, tmp_path):
    """A small (256x256) simulated microscope; the RE exists first, as ophyd-async needs."""
    microscope = sim_microscope(seed=1, data_dir=tmp_path / "data", image_shape=(256, 256))
    yield microscope
    microscope.close()


@pytest.fixture
def calibrated_scope(RE, tmp_path):
    """Like ``scope`` but the DMD starts with the sim's true calibration."""
    microscope = sim_microscope(
        seed=2, data_dir=tmp_path / "data", image_shape=(256, 256), dmd_calibrated=True
    )
    yield microscope
    microscope.close()


@pytest.fixture
def start_script(tmp_path):
    """Start ``source`` as a Python script in a child process (real signals, its own
    RunEngine); its argument is a data directory under ``tmp_path``."""

    def start(source: str) -> subprocess.Popen:
        script = tmp_path / "script.py"
        script.write_text(source)
        return subprocess.Popen(
            # faulthandler: a crash (e.g. an abort at exit) prints every thread's stack
            [sys.executable, "-X", "faulthandler", str(script), str(tmp_path / "data")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start
