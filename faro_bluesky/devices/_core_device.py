"""`CoreDevice`: an ophyd-async device over a core that reads it in ``connect()``.

Two things every device over a `CMMCorePlus` needs, kept here so that the stage, focus
and channel devices do them the same way:

* **Nothing is asked of the core before ``connect()``.** Construction only records
  arguments, so ``init_devices(mock=True)`` and ``connect(mock=True)`` build a device
  tree without hardware (ophyd-async's contract), and a slow or missing device fails
  inside ``connect()``'s timeout and error reporting instead of in a constructor. The
  query runs in the `DeviceConnector`, after the child signals are connected, so
  ophyd-async's connect caching and ``force_reconnect=True`` apply unchanged.
* **Readbacks follow ``core.events``.** Another client of the same core (napari-
  micromanager, a script, a GUI thread) may move the stage or change a preset at any
  time; pymmcore-plus reports that through ``core.events`` from whichever thread made
  the change (or, with the Qt signal backend, from the GUI thread). Soft signals belong
  to the event loop the device was connected on, so handlers only hop onto that loop
  (``loop.call_soon_threadsafe``): they never call the core, never block and never raise
  into the caller that moved the stage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Literal, TypeVar

from ophyd_async.core import DeviceConnector, DeviceMock, NotConnectedError, StandardReadable
from pymmcore_plus import CMMCorePlus
from pymmcore_plus.core.events import CMMCoreSignaler

from ._worker import CoreWorker

logger = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[..., None]


class CoreSubscriptions:
    """Connections from ``core.events`` signals to one device's handlers.

    The core outlives its devices (a session builds devices over a core it keeps), so a
    connection must not keep a device alive: handlers are held through `weakref.WeakMethod`
    and the connections are dropped by `close` or, failing that, when the device is
    garbage-collected.
    """

    def __init__(self) -> None:
        self._connections: list[tuple[Any, Handler]] = []
        self._finalizer: weakref.finalize | None = None
        self._local = threading.local()

    @property
    def connected(self) -> bool:
        """Whether any signal is connected."""
        return bool(self._connections)

    def connect(
        self,
        owner: object,
        core: CMMCorePlus,
        loop: asyncio.AbstractEventLoop,
        handlers: Mapping[str, Handler],
        filters: Mapping[str, Callable[..., bool]] | None = None,
    ) -> None:
        """Relay ``core.events.<name>`` to the bound method ``handlers[name]`` on ``loop``.

        ``filters[name](*args)``, if given, decides in the emitting thread whether an
        event is relayed at all: a camera's snap reports its shutter opening and closing,
        and each relay wakes the event loop, which then takes the interpreter from the
        camera's thread just as its exposure begins or ends (decision 0069). Any previous
        connections are dropped first (a reconnect subscribes afresh).
        """
        self.close()
        connect = _connector_for(core.events)
        filters = filters or {}
        for signal_name, method in handlers.items():
            signal = getattr(core.events, signal_name)
            wanted = filters.get(signal_name)
            relay = self._relay(
                weakref.WeakMethod(method), loop, None if wanted is None else _weak(wanted)
            )
            connect(signal, relay)
            self._connections.append((signal, relay))
        self._finalizer = weakref.finalize(owner, _disconnect, self._connections)
        self._finalizer.atexit = False  # at exit the core goes too: nothing to leak

    def close(self) -> None:
        """Disconnect every signal (idempotent)."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _disconnect(self._connections)

    def call_own(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` (on the core's thread) as one of the device's own commands.

        Events the call emits synchronously are not relayed: the device sets its
        readbacks itself from what it measures when the command completes, and an event
        carrying a move's *target* must not overwrite that (nor race with axis moves
        composed from the last commanded position).
        """
        with self._own():
            return fn(*args)

    @contextmanager
    def _own(self) -> Iterator[None]:
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def _relay(
        self,
        ref: weakref.WeakMethod[Handler],
        loop: asyncio.AbstractEventLoop,
        wanted: Callable[..., bool] | None = None,
    ) -> Handler:
        local = self._local

        def relay(*args: Any) -> None:
            # runs in the emitting thread, inside the other client's core call
            if getattr(local, "depth", 0) or (wanted is not None and not wanted(*args)):
                return
            method = ref()
            if method is None:
                return
            with suppress(RuntimeError):  # the loop is closed: the session is over
                loop.call_soon_threadsafe(_run_handler, method, args)

        return relay


def _connector_for(events: object) -> Callable[[Any, Handler], None]:
    """How to connect a relay to the signals of ``events`` so it runs in the emitting thread.

    psygnal (pymmcore-plus's default) calls slots in the emitting thread. With the Qt
    backend (a QApplication existed when the core was made), a plain connection from our
    loop's thread would queue every call to that thread, which runs no Qt event loop: the
    events would never arrive. A direct connection runs the relay where the event is
    emitted, which is all it needs (it only hops onto the loop).
    """
    if isinstance(events, CMMCoreSignaler):
        return lambda signal, relay: signal.connect(relay)
    from qtpy.QtCore import Qt  # only reached when the core already uses Qt

    direct = Qt.ConnectionType.DirectConnection
    return lambda signal, relay: signal.connect(relay, direct)


def _disconnect(connections: list[tuple[Any, Handler]]) -> None:
    while connections:
        signal, relay = connections.pop()
        try:
            signal.disconnect(relay)
        except Exception:  # already gone with its core  # pragma: no cover
            logger.debug("could not disconnect %r", relay, exc_info=True)


def _weak(fn: Callable[..., bool]) -> Callable[..., bool]:
    """``fn`` (a bound method) without keeping its device alive: True once it is gone."""
    ref = weakref.WeakMethod(fn)  # type: ignore[arg-type]

    def wanted(*args: Any) -> bool:
        method = ref()
        return True if method is None else method(*args)

    return wanted


def _run_handler(method: Handler, args: tuple[Any, ...]) -> None:
    try:
        method(*args)
    except Exception:
        logger.exception("handling a core event %r in %r failed", args, method)


class _CoreConnector(DeviceConnector):
    """Connects the children, then lets the `CoreDevice` read the core (real mode only)."""

    async def connect_mock(self, device: CoreDevice, mock: DeviceMock) -> None:  # type: ignore[override]
        device._events.close()
        device._core_mode = "mock"
        await super().connect_mock(device, mock)

    async def connect_real(  # type: ignore[override]
        self, device: CoreDevice, timeout: float, force_reconnect: bool
    ) -> None:
        device._core_mode = "unconnected"
        await super().connect_real(device, timeout, force_reconnect)
        loop = asyncio.get_running_loop()
        # subscribe first, then read: a change made in between is not lost
        device._events.connect(
            device, device._worker.core, loop, device._core_handlers(), device._core_filters()
        )
        try:
            await asyncio.wait_for(device._read_core(), timeout)
        except BaseException:
            device._events.close()
            raise
        device._core_mode = "real"


class CoreDevice(StandardReadable):
    """Base of the devices over one core: connect reads it, ``core.events`` update it.

    Subclasses implement `_read_core` (query the initial state through the worker) and
    `_core_handlers` (which ``core.events`` signals to follow; handlers run on the event
    loop the device was connected on).
    """

    def __init__(self, core: CMMCorePlus, name: str = "") -> None:
        self._worker = CoreWorker.for_core(core)
        self._events = CoreSubscriptions()
        self._core_mode: Literal["unconnected", "mock", "real"] = "unconnected"
        super().__init__(name=name, connector=_CoreConnector())

    @property
    def mocked(self) -> bool:
        """True once connected with ``mock=True``: commands change only the signals."""
        return self._core_mode == "mock"

    def _require_connected(self) -> None:
        if self._core_mode == "unconnected":
            what = self.name or type(self).__name__
            raise NotConnectedError(
                f"{what} is not connected: connect it first (it reads the core then), "
                "e.g. with init_devices(), await device.connect() or Microscope.from_core()"
            )

    async def _read_core(self) -> None:
        """Read the initial state from the core (through ``self._worker``)."""
        raise NotImplementedError

    def _core_handlers(self) -> dict[str, Handler]:
        """``{core.events signal name: bound method run on the device's loop}``."""
        return {}

    def _core_filters(self) -> dict[str, Callable[..., bool]]:
        """``{signal name: whether an event concerns this device}`` (default: all do).

        Asked in the emitting thread before the event is relayed: cheap, thread-safe,
        never raising.
        """
        return {}

    def close(self) -> None:
        """Stop following ``core.events`` (also done when the device is collected)."""
        self._events.close()
