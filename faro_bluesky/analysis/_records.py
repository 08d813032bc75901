"""What the analyzer records per visit: its summary, its failures, and a visit in progress.

`VisitSummary` is defined with the document schema (`faro_bluesky.schema`), since the
``analysis`` stream records it; it is re-exported here for the analyzer.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..schema import VisitSummary
from ._documents import Stack
from ._jobs import FrameResult
from ._protocols import FrameInfo, Mask

__all__ = ["AnalysisError", "ErrorLog", "Visit", "VisitSummary"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisError:
    """A failure the analyzer recorded instead of raising into the RunEngine."""

    source: str
    """Which step: documents, read, segmentation, tracking, stimulator, features (measured
    after the mask), ref_features, storage."""
    exc_type: str
    message: str
    traceback: str
    fov: int | None = None
    t: int | None = None
    time: float = 0.0

    def __str__(self) -> str:
        where = f" FOV {self.fov} t={self.t}" if self.fov is not None else ""
        return f"{self.source}{where}: {self.exc_type}: {self.message}"


class ErrorLog:
    """Where the analysis records a failure instead of raising it (ARCHITECTURE 5).

    Shared by the analyzer's parts; ``errors`` is the analyzer's public list.
    """

    def __init__(self, errors: list[AnalysisError]) -> None:
        self.errors = errors

    def record(
        self, source: str, exc: BaseException, fov: int | None = None, t: int | None = None
    ) -> AnalysisError:
        """Keep ``exc`` (with its traceback) as the failure of ``source`` at (fov, t)."""
        error = AnalysisError(
            source=source,
            exc_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            fov=fov,
            t=t,
            time=time.time(),
        )
        self.errors.append(error)
        logger.warning("analysis error: %s", error)
        return error


@dataclass(eq=False)
class Visit:
    """One imaging stack on its way through the analysis (analyzer thread only)."""

    stack: Stack
    arrived: float
    """`time.monotonic` when its last frame was filed."""
    needs_mask: bool
    """Whether the plan awaits a mask computed from it (the latency path)."""
    image: np.ndarray | None = None
    info: FrameInfo | None = None
    result: FrameResult | None = None
    failed: bool = False
    """Segmentation (or reading) failed: no result will come."""
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    masked: bool = False
    """Its mask is settled: published or skipped."""
    mask: Mask | None = None
    """The mask published (None if none was)."""
    mask_fraction: float = math.nan
    mask_ms: float = math.nan
    pixels_at: float = math.nan
    """`time.time` when its stack's pixels were in hand (`MaskTimes.pixels_at`)."""
    labels_at: float = math.nan
    """`time.time` when the stimulator's inputs were ready (`MaskTimes.labels_at`)."""
    compute_ms: float = 0.0
    """Components' compute on the latency path so far (`MaskTimes.compute_ms`)."""
    spans: list[tuple[float, float]] = field(default_factory=list)
    """For a mask computed from the segmenter's plane: each component's compute
    (`MaskTimes.compute_spans`); empty otherwise."""
    tracked: bool = False
    """Tracked before its stack was complete (its mask came from its segmenter's plane)."""
    errors: list[str] = field(default_factory=list)

    @property
    def exposure_end(self) -> float:
        """When its stack's last exposure ended (epoch s; NaN if the documents lack it)."""
        ends = [f.exposure_end for f in self.stack.frames if not math.isnan(f.exposure_end)]
        return max(ends, default=math.nan)

    @property
    def key(self) -> tuple[int, int]:
        return (self.stack.head.fov, self.stack.head.t)

    @property
    def done(self) -> bool:
        """Segmented (or failed): ready to be tracked when its turn comes."""
        return self.result is not None or self.failed
