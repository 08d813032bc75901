"""Child processes of the queue server: found, waited for by asking them, ended.

Each server answers a status request once it is up, so starting one is "ask until it
answers (each request has its own timeout), or give up after ``timeout``", never a
guessed delay; ending one is SIGTERM, then SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

from .._process import terminate

__all__ = ["answers", "pause_between_visits", "script", "terminate", "wait_until_answers"]


def script(name: str, module: str, function: str) -> list[str]:
    """A console script of this environment, or its function run by this Python."""
    found = shutil.which(name, path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-c", f"import {module}; {module}.{function}()"]


def wait_until_answers(api: Any, process: subprocess.Popen, what: str, timeout: float) -> None:
    """Ask ``api.status()`` until it answers; fail early if ``process`` exits.

    Each request has its own timeout (0MQ: 2 s, HTTP: 5 s), so this is a bounded poll of
    the server itself, not a guessed delay.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            api.status(reload=True)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer within {timeout:g} s: {exc}") from exc
        # a refused connection fails at once: ask again after a tenth of a second
        threading.Event().wait(0.1)


def answers(api: Any, process: subprocess.Popen, what: str, timeout: float) -> None:
    """`wait_until_answers`, then close ``api``."""
    try:
        wait_until_answers(api, process, what, timeout)
    finally:
        api.close()


def pause_between_visits(api: Any, timeout: float) -> None:
    """Pause between visits if that comes within ``timeout`` s, else at once.

    An immediate pause inside a reading followed by a stop can fail the run (bluesky
    refuses the baseline's closing reading while the interrupted one is open), so the
    deferred pause, at the plan's next checkpoint, is tried first.
    """
    if api.status(reload=True)["re_state"] == "running":
        api.re_pause(option="deferred")
    try:
        api.wait_for_idle_or_paused(timeout=timeout / 2)
    except TimeoutError:
        api.re_pause(option="immediate")
        api.wait_for_idle_or_paused(timeout=timeout / 2)
