"""A quiet interpreter exit with MMCore in the process.

pymmcore's C++ calls release the GIL. During interpreter finalization a daemon thread that
runs one (or destroys a pymmcore object) is stopped with a forced unwind inside C++, and the
process aborts ("FATAL: exception not rethrown", SIGABRT; seen in ~1 of 60 exits). The
RunEngine's event loop runs on such a daemon thread, so at exit we stop the RunEngine loops
(idle by then: ``RE(...)`` has returned) and wait for their threads, close the microscopes
still open (their devices follow ``core.events``), and we stop automatic garbage
collection so no other thread triggers C++ destructors while Python shuts down.
"""

from __future__ import annotations

import atexit
import gc
import logging

logger = logging.getLogger(__name__)
_JOIN_S = 2.0


def stop_event_loops() -> None:
    """Stop every RunEngine event loop and join its thread (idempotent)."""
    try:
        from bluesky.run_engine import _ensure_event_loop_running
    except ImportError:  # pragma: no cover - bluesky is a dependency
        return
    threads = dict(getattr(_ensure_event_loop_running, "loop_to_thread", {}))
    for loop, thread in threads.items():
        if loop.is_closed() or not thread.is_alive():
            continue
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile
            continue
        thread.join(_JOIN_S)
        if thread.is_alive():  # pragma: no cover - a plan still running in another thread
            logger.warning("the RunEngine loop did not stop within %.0f s at exit", _JOIN_S)


def quiet_exit() -> None:
    """Stop RunEngine loops, close open microscopes, collect now, then no automatic GC."""
    from ._microscope import close_open_microscopes  # (imports this module)

    stop_event_loops()
    close_open_microscopes()
    gc.collect()
    gc.disable()


atexit.register(quiet_exit)
