"""A pause at once in the middle of an event's readings, then stop or abort: the run ends.

The interrupted event's bundle is dropped (bluesky's ``drop``), so whatever the plan's
clean-up records next (here a baseline reading, as the shell's profile does) can open its
own event instead of failing with "A second 'create' message is not allowed".
"""

from __future__ import annotations

import asyncio
import threading

import bluesky.preprocessors as bpp
import pytest
from bluesky import Msg
from bluesky.utils import RunEngineInterrupted
from ophyd_async.core import StandardReadable, soft_signal_r_and_setter

from faro_bluesky.plans._stubs import read_event


class StuckReading(StandardReadable):
    """A readable whose read never finishes on its own (until the RunEngine cancels it)."""

    def __init__(self, name: str) -> None:
        with self.add_children_as_readables():
            self.value, _ = soft_signal_r_and_setter(float, 1.0)
        super().__init__(name=name)
        self.started = threading.Event()

    async def read(self):
        self.started.set()
        await asyncio.Event().wait()  # cancelled by the pause
        return await super().read()


class Plain(StandardReadable):
    def __init__(self, name: str) -> None:
        with self.add_children_as_readables():
            self.value, _ = soft_signal_r_and_setter(float, 2.0)
        super().__init__(name=name)


@pytest.mark.parametrize("end", ["stop", "abort"])
def test_a_reading_cut_by_a_pause_does_not_break_the_clean_up(RE, docs, end):
    stuck, plain = StuckReading("stuck"), Plain("plain")
    RE(Msg("null"))  # the loop runs
    for dev in (stuck, plain):
        asyncio.run_coroutine_threadsafe(dev.connect(), RE.loop).result(10)

    @bpp.run_decorator()  # closes the run in its clean-up, as optogenetic_plan does
    def plan():
        yield from read_event([plain], "primary")
        yield from read_event([plain, stuck], "primary")

    def pause_when_stuck():
        stuck.started.wait(30)
        RE.request_pause(defer=False)

    threading.Thread(target=pause_when_stuck, daemon=True).start()
    with pytest.raises(RunEngineInterrupted):
        RE(bpp.baseline_wrapper(plan(), [plain]))
    assert RE.state == "paused"
    result = getattr(RE, end)()
    assert result.exit_status == {"stop": "success", "abort": "abort"}[end]
    (stop,) = docs.of("stop")
    assert stop["exit_status"] == result.exit_status
    # the first event and both baseline readings are recorded; the cut one is not
    assert stop["num_events"] == {"primary": 1, "baseline": 2}
