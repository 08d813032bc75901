"""bluesky's IPython magics (``%mov``, ``%movr``, ``%ct``, ``%wa``) for ophyd-async devices.

`bluesky.magics.BlueskyMagics` (bluesky 1.15.1) was written for ophyd v1 devices. With
ophyd-async ones four things need care (docs/decisions/0045-shell-session.md):

1. Importing `bluesky.magics` builds a class-level RunEngine on a new event loop, and
   every RunEngine makes its loop the global bluesky loop: ``init_devices()`` and
   ``call_in_bluesky_event_loop`` would then connect later devices on a loop that no
   session RunEngine runs. `register_magics` puts the session's loop back.
2. The magics run plans on that class-level RunEngine, on its own loop, while our devices
   live on the session's loop. Here they get a scratch RunEngine on the session's loop:
   no catalog, no baseline, no scan id, as bluesky intends ("None of these save any data").
3. ophyd-async devices have no labels; `faro_bluesky.cli.add_labels` (or
   ``setup.label`` in a profile) sets the attribute the magics read.
4. ``%wa`` shows values only for objects with an ophyd v1 ``position``, and ``%ct``
   prints event data, where a camera's frame is external (absent). Here ``%wa`` reads
   every labelled Movable on the session's loop, and ``%ct`` names the frame it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import bluesky.plans as bp
from bluesky import RunEngine, RunEngineInterrupted
from bluesky.magics import BlueskyMagics, get_labeled_devices
from bluesky.protocols import Movable
from bluesky.run_engine import set_bluesky_event_loop
from IPython.core.magic import line_magic, magics_class

_READ_TIMEOUT_S = 10.0


@magics_class
class FaroMagics(BlueskyMagics):
    """`BlueskyMagics` whose ``%wa`` and ``%ct`` understand ophyd-async devices.

    ``%mov``/``%movr`` are bluesky's own (``%mov focus 5 stage.x 100``).
    """

    @line_magic
    def wa(self, line: str) -> None:
        """Where all: the readings of every labelled Movable, per label (``%wa motors``)."""
        labelled = get_labeled_devices(user_ns=self.shell.user_ns)
        for label in line.split() or sorted(labelled):
            print(label)
            entries = labelled.get(label)
            if not entries:
                print("  <no matches for this label>")
                continue
            movables = [device for _, device in entries if isinstance(device, Movable)]
            rows = [row for device in movables for row in self._readings(device)]
            width = max([len("Positioner"), *(len(key) for key, _ in rows)])
            if rows:
                print(f"  {'Positioner':<{width}}  Value")
                for key, value in rows:
                    print(f"  {key:<{width}}  {value}")
            names = ", ".join(f"{variable} ({device.name})" for variable, device in entries)
            print(f"  devices: {names}\n")

    @line_magic
    def ct(self, line: str) -> None:
        """Count: trigger and read the labelled detectors once (``%ct``, ``%ct detectors``).

        Nothing goes to the catalog; a camera's frame goes to a zarr store in the data
        directory that no run references (``RE(bp.count([camera]))`` records one).
        """
        labelled = get_labeled_devices(user_ns=self.shell.user_ns)
        labels = line.split() or ["detectors"]
        detectors = list({id(d): d for lab in labels for _, d in labelled.get(lab, [])}.values())
        if not detectors:
            print(f"no devices labelled {' or '.join(labels)}")
            return
        print("[Not saved in the catalog. Use RE(bp.count(...)) to keep a reading.]")
        with contextlib.suppress(RunEngineInterrupted):  # a Ctrl-C: the magic ends here
            self.RE(bp.count(detectors), _CountPrinter())
        self._ensure_idle()

    def _readings(self, device: Any) -> list[tuple[str, Any]]:
        """``(key, value)`` of each reading of ``device``, read on the RunEngine's loop."""
        try:
            reading = device.read()
            if inspect.isawaitable(reading):
                future = asyncio.run_coroutine_threadsafe(_awaited(reading), self.RE.loop)
                reading = future.result(_READ_TIMEOUT_S)
        except Exception as exc:
            return [(device.name, f"<{type(exc).__name__}: {exc}>")]
        return [(key, r["value"]) for key, r in reading.items()]


# @magics_class registers only the magics defined in the class itself: keep bluesky's
# %mov and %movr, with ours replacing its %wa and %ct
FaroMagics.magics = {
    kind: {**BlueskyMagics.magics.get(kind, {}), **FaroMagics.magics.get(kind, {})}
    for kind in ("line", "cell")
}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class _CountPrinter:
    """Prints each reading of ``%ct``'s event; external data (frames) by shape and dtype."""

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}

    def __call__(self, name: str, doc: Any) -> None:
        if name == "descriptor":
            self._keys.update(doc["data_keys"])
        elif name == "event":
            for key, info in self._keys.items():
                if info.get("external"):
                    shape = "x".join(str(n) for n in info.get("shape", []))
                    value = f"<frame {shape} {info.get('dtype_numpy', info['dtype'])}>"
                else:
                    value = doc["data"].get(key)
                print(f"{key:<30} {value}")


def register_magics(shell: Any, RE: RunEngine) -> FaroMagics:
    """Register `FaroMagics` in ``shell``, running plans on a scratch RunEngine on ``RE``'s loop."""
    scratch = RunEngine({}, loop=RE.loop, context_managers=RE.context_managers)
    set_bluesky_event_loop(RE.loop)  # importing bluesky.magics made its own loop the global one
    magics = FaroMagics(shell=shell)
    magics.RE = scratch
    shell.register_magics(magics)
    return magics
