"""The per-visit analysis summary and the fields of it a run records (stream ``analysis``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final


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
    """From the visit's stack being complete to its mask being published (NaN: none).
    Not recorded in the ``analysis`` stream (see `SUMMARY_FIELDS`)."""


@dataclass(frozen=True)
class SummaryField:
    """One recorded field of a `VisitSummary`: its signal type and value before any read."""

    name: str
    """The `VisitSummary` attribute (key ``analysis-<name>`` in a run)."""
    type: type[int] | type[float] | type[str]
    initial: int | float | str
    units: str | None = None

    @property
    def dtype(self) -> str:
        """The event-model data-key dtype (``integer``, ``number``, ``string``)."""
        return {int: "integer", float: "number", str: "string"}[self.type]


SUMMARY_FIELDS: Final[tuple[SummaryField, ...]] = (
    SummaryField("fov", int, -1),
    SummaryField("t", int, -1),
    SummaryField("phase", str, ""),
    SummaryField("n_cells", int, 0),
    SummaryField("mean_activity", float, math.nan),
    SummaryField("mask_fraction", float, math.nan),
    SummaryField("analysis_ms", float, 0.0, units="ms"),
    SummaryField("error", str, ""),
)
"""The `VisitSummary` fields recorded per visit, in stream ``analysis``, in this order."""
