"""The analysis thread's dispatcher: typed messages, and a next run held until the last ends."""

from __future__ import annotations

from concurrent.futures import Future

from faro_bluesky.analysis._dispatch import Dispatcher
from faro_bluesky.analysis._messages import (
    Close,
    FeaturesMeasured,
    Fired,
    FrameIn,
    JobResult,
    Measured,
    Segmented,
    StackIn,
    Start,
    Stop,
)
from faro_bluesky.analysis._records import ErrorLog


class FakeRun:
    def __init__(self) -> None:
        self.ended = False
        self.jobs = 0
        self.after_mask: dict = {}
        self.tracks = None

    def busy(self) -> bool:
        return self.jobs > 0

    def idle(self) -> bool:
        return self.jobs == 0


class FakePipeline:
    """Counts a job per Start's run; a Measured result ends it, a Stop ends the run."""

    def __init__(self) -> None:
        self.run = FakeRun()
        self.log: list[object] = []

    def start_run(self, msg):
        self.run = FakeRun()
        self.run.jobs = 1
        self.log.append(msg)

    def measured(self, msg):
        self.run.jobs -= 1
        self.log.append(msg)
        self.finish_if_idle()

    def stop_run(self, msg):
        self.run.ended = True
        self.log.append(msg)
        self.finish_if_idle()

    def finish_if_idle(self):
        if self.run.ended and not self.run.busy():
            self.run.ended = False

    def tick(self):
        pass

    def unused(self, msg):
        raise AssertionError(f"not posted in these tests: {msg!r}")

    def exposing(self, msg=None):
        pass  # (stores fired masks; called at close)

    frame_in = stack_in = segmented = features_measured = fired = unused
    exposed = speculated = mask_out = unused


def dispatcher_with(pipeline: FakePipeline) -> tuple[Dispatcher, list]:
    errors: list = []
    dispatcher = Dispatcher(ErrorLog(errors))
    dispatcher.route_to(pipeline)  # type: ignore[arg-type]
    dispatcher.start()
    return dispatcher, errors


def test_results_are_never_held_and_a_next_run_waits_for_the_last():
    pipeline = FakePipeline()
    dispatcher, errors = dispatcher_with(pipeline)
    first, second = Start({"uid": "a"}), Start({"uid": "b"})
    stop_a, stop_b = Stop({"uid": "a"}), Stop({"uid": "b"})
    result_a, result_b = Measured((0, 0), Future()), Measured((0, 1), Future())
    for msg in (first, stop_a, second, stop_b, result_a, result_b):
        dispatcher.post(msg)
    assert dispatcher.wait_idle(5)
    # run b's start and stop waited for run a's result; then came in their order
    assert pipeline.log == [first, stop_a, result_a, second, stop_b, result_b]
    assert errors == []
    dispatcher.close()


def test_every_message_kind_is_typed_and_results_share_a_base():
    for kind in (Segmented, Measured, FeaturesMeasured):
        assert issubclass(kind, JobResult)
    for kind in (Start, Stop, StackIn, FrameIn, Fired, Close):
        assert not issubclass(kind, JobResult)
