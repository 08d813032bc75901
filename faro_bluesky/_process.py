"""Ending a child process we started (proxy, Redis/Valkey, RE Manager): one way everywhere."""

from __future__ import annotations

import subprocess


def terminate(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM ``process``; SIGKILL if it has not exited after ``timeout`` s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
