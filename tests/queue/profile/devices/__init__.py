"""The queue tests' profile: a tiny simulated microscope and a gate the test opens.

`Gate` is read once per visit (``per_visit=["gate"]``) and holds each read until the
test answers over a loopback TCP connection (``$FARO_TEST_GATE`` = ``host:port``), so
the test knows a run is in the middle of a visit without guessing a delay.
"""

from __future__ import annotations

import asyncio
import os
import time

from faro_bluesky.cli import Setup
from faro_bluesky.sim import sim_microscope


class Gate:
    """A bluesky Readable whose read waits for the test's ``go``."""

    parent = None

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        host, port = address.rsplit(":", 1)
        self._host, self._port = host, int(port)
        self.reads = 0

    async def read(self) -> dict:
        self.reads += 1
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            writer.write(f"read {self.reads}\n".encode())
            await writer.drain()
            await reader.readline()  # the test's "go"
        finally:
            writer.close()
        return {self.name: {"value": self.reads, "timestamp": time.time()}}

    async def describe(self) -> dict:
        return {self.name: {"source": "test-gate", "dtype": "integer", "shape": []}}


def instruments(setup: Setup) -> dict[str, object]:
    scope = sim_microscope(
        setup.seed,
        data_dir=setup.data_dir,
        image_shape=(48, 64),
        dmd_shape=(60, 80),
        dmd_calibrated=True,
        time_scale=10.0,
    )
    setup.baseline.append(scope.stage)
    # the test checks that closing the environment closes the session (and so this)
    closed = os.environ.get("FARO_TEST_CLOSED")
    if closed:
        setup.on_close(lambda: open(closed, "w").close())
    return {
        "scope": scope,
        "stage": scope.stage,
        "camera": scope.camera,
        "gate": Gate("gate", os.environ["FARO_TEST_GATE"]),
    }
