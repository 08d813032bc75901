"""The messages of the analysis thread's inbox: one small frozen dataclass per kind.

Everything the analysis thread does starts as a message: documents filed on the
RunEngine's thread (`Start`, `FrameIn`, `StackIn`, `Fired`, `Stop`) and the results of
jobs handed to the executor (`Segmented`, `Measured`, `FeaturesMeasured`), which the
executor's threads post when a job finishes. They were string-tagged tuples dispatched on
``item[0]``; as types, a handler is looked up by class (`Dispatcher`), a misspelt kind is
an import error rather than a silently unhandled tuple, and a job's result is told from a
document by its base class (`JobResult`), which decides whether a message may wait for
the previous run to finish.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray

from ..devices import Frame
from ._documents import FrameRef, Stack

Key = tuple[int, int]
"""A visit's (fov, t)."""


@dataclass(frozen=True, slots=True)
class Start:
    """A run's start document: the previous run is finished, a new one begins."""

    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrameIn:
    """A frame of a visit whose stack is not complete yet (only with a stimulator)."""

    frame: FrameRef


@dataclass(frozen=True, slots=True)
class StackIn:
    """A visit's stack is complete (its last frame was filed)."""

    stack: Stack
    arrived: float
    """`time.monotonic` when its last frame was filed (the latency clock starts)."""


@dataclass(frozen=True, slots=True)
class Fired:
    """A mask went out with a stimulation: stored as the ``stim_mask`` label image."""

    ref: FrameRef
    """The stim readout frame it lit."""
    mask: NDArray[Any]


@dataclass(frozen=True, slots=True)
class MaskOut:
    """A FOV's mask is being projected (its event came while the stimulation exposes).

    Its visits held after their mask go on now, during the stimulation's exposure, not
    after it (`Fired` follows with the stim frame, once its event is saved).
    """

    fov: int


@dataclass(frozen=True, slots=True)
class Exposing:
    """A camera started an exposure while stimulation masks wait to be stored."""


@dataclass(frozen=True, slots=True)
class Stop:
    """A run's stop document: finish its analysis when the last visit is done."""

    doc: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Close:
    """`Analyzer.close`: the thread ends."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """A job handed to the executor finished.

    Never held for a later run: it is this run's, and the run cannot finish without it.
    """

    key: Key
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class Segmented(JobResult):
    """A segmentation started with the visit's first plane (`VisitPipeline.segment_early`)."""


@dataclass(frozen=True, slots=True)
class Speculated(JobResult):
    """A frame segmented at its readout, before its event named its visit.

    ``key`` is ``(-1, -1)``; ``loc`` is the frame's ``(uri, index)``.
    """

    loc: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Exposed:
    """A frame of the segmenter's channel was read out by a camera of this process."""

    frame: Frame
    seen: int
    """`EXPOSURES.generation` at the readout: its segmentation waits for the next exposure."""


@dataclass(frozen=True, slots=True)
class Measured(JobResult):
    """A visit's segmentation and measurements (what its mask needs, or everything)."""


@dataclass(frozen=True, slots=True)
class FeaturesMeasured(JobResult):
    """The features a visit's mask did not need, measured after it."""


Message = (
    Start
    | FrameIn
    | StackIn
    | MaskOut
    | Fired
    | Exposing
    | Stop
    | Close
    | Segmented
    | Measured
    | FeaturesMeasured
)
"""Every message the analysis thread takes."""
