"""What the analyzer records per visit: its summary, its failures, and a visit in progress."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._documents import Stack
from ._jobs import FrameResult
from ._protocols import FrameInfo, Mask


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


@dataclass(frozen=True)
class VisitSummary:
    """What the analysis of one visit found (one event of the ``analysis`` stream)."""

    fov: int
    t: int
    phase: str
    n_cells: int
    mean_activity: float
    """Mean ``cnr`` (ERK-KTR cytoplasm/nucleus ratio) of the cells, NaN without it."""
    mask_fraction: float
    """Fraction of the image the computed mask lights (1.0 whole field, NaN if none)."""
    analysis_ms: float
    """From the visit's stack being complete to its results being stored."""
    error: str = ""
    mask_ms: float = math.nan
    """From the visit's stack being complete to its mask being published (NaN: none)."""


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
    errors: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.stack.head.fov, self.stack.head.t)

    @property
    def done(self) -> bool:
        """Segmented (or failed): ready to be tracked when its turn comes."""
        return self.result is not None or self.failed
