"""The analyzer contract: what the plan, its validation and the status ask of an analyzer.

The plan talked to its analyzer by probing (``getattr(analyzer, "mask_timeout", 80)``,
``hasattr(analyzer, "pop_summaries")``), so a renamed member read as its default without a
word, and nobody could say what an analyzer must provide. These protocols say it, each one
a role an object may play, as bluesky's ``Readable``/``Movable`` are roles of a device:

- `DocumentSink`: a bluesky callback (the plan subscribes it for its run);
- `MaskSource`: gives the plan each stimulation mask (`Analyzer`, `RemoteMasks`);
- `MaskTiming`: says when each mask's inputs were ready (`MaskTimes`, in stream ``mask``);
- `SummarySource`: per-visit summaries the plan records in stream ``analysis``;
- `QueueReporter`: queue depths for status displays;
- `Closable`: says when it no longer analyses (the plan refuses it then);
- `AnalysisNeeds`: channels and phase metadata its components read, checked before a run.

`ClosedLoopAnalyzer` is all of them: what `faro_bluesky.analysis.Analyzer` is. A plan's
analyzer may play any subset of roles; a role is checked once, where the analyzer is
plugged in (`contract_problems`, from the plan's argument checks), and then used through
its protocol. Only `AnalysisNeeds` is read member by member (`Requirements.of`): each of
its declarations is **optional**, an analyzer that declares none needs nothing.

These are types only, with no behaviour, so they live beside the document schema, below
every layer: the plan, devices, the status and storage import them without importing the
analysis (docs/decisions/0050-analyzer-split.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from numpy.typing import NDArray

from ._summary import VisitSummary

__all__ = [
    "AnalysisNeeds",
    "Closable",
    "ClosedLoopAnalyzer",
    "DocumentSink",
    "MaskSource",
    "MaskTimes",
    "MaskTiming",
    "QueueReporter",
    "Requirements",
    "SummarySource",
    "contract_problems",
    "mask_source",
    "provides_masks",
]

MaskValue = NDArray[Any] | bool | None
"""A mask as a source returns it: camera pixels (non-zero = light), True for the whole
field, False or None for no light."""

QueueStat = int | tuple[int, int] | Mapping[str, int]
"""One queue of `QueueReporter.queue_stats`: a depth, ``(depth, capacity)`` or a mapping
with ``depth`` and ``capacity``."""


@runtime_checkable
class DocumentSink(Protocol):
    """A bluesky callback: the plan subscribes it for its run (``bpp.subs_wrapper``)."""

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document on the RunEngine's thread; must not block, must not raise."""
        ...


@runtime_checkable
class MaskSource(Protocol):
    """Gives the plan the stimulation mask computed from each frame."""

    @property
    def provides_masks(self) -> bool:
        """Whether the plan takes its masks from here (False: whole field or ``stim_mask``).

        Read when the plan is built, to validate (a DMD is needed) and to choose the
        plan's mask provider.
        """
        ...

    @property
    def mask_timeout(self) -> float:
        """Seconds the plan waits for a mask before firing a blank one (recorded missed).

        The plan's own ``mask_timeout=`` wins over it; without a mask source the plan
        waits 80 s.
        """
        ...

    async def get_mask(self, fov: int, t: int) -> MaskValue:
        """The mask of frame ``(fov, t)``; awaited on the RunEngine's loop, once per stim.

        May wait (for the frame's analysis): the plan's mask facet applies the timeout and
        cancels the wait on pause. Raise (e.g. `MaskUnavailable`) when none will come.
        """
        ...


@dataclass(frozen=True, slots=True)
class MaskTimes:
    """When a mask's inputs were ready, as its source saw them (`MaskField` timing fields).

    The plan's documents tell when a frame's exposure ended, when the plan had its mask,
    when the DMD showed it and when the stimulation started; what happened in between is
    the analyzer's to tell, and it tells it here, so that a stored run splits its latency
    into stages (`faro_bluesky.storage.run_timing`) without the analyzer at hand.
    """

    pixels_at: float = math.nan
    """The source visit's pixels were in hand (epoch s)."""
    labels_at: float = math.nan
    """Its labels (and tracks, if the stimulator needs them) were ready (epoch s)."""
    compute_ms: float = math.nan
    """The components' compute between the source's exposure end and the mask (ms)."""
    compute_spans: tuple[tuple[float, float], ...] = ()
    """For a mask published before its visit's last exposure ended (computed from the
    segmenter's plane alone): when each component computed (epoch s), since which part of
    it lies on the latency path is known only later. Empty otherwise."""

    MAX_SPANS: ClassVar[int] = 2
    """Spans the documents keep: the segmentation, then the steps after it (positions,
    tracking, the stimulator; ``mask-segment_*`` and ``mask-steps_*``)."""


@runtime_checkable
class MaskTiming(Protocol):
    """A mask source that says when each mask's inputs were ready (optional role).

    The plan's mask facet asks once per mask it got in time and records the answer in
    stream ``mask``; without this role those fields are NaN.
    """

    def mask_times(self, fov: int, t: int) -> MaskTimes | None:
        """The times of the mask of ``(fov, t)`` (None: unknown); any thread, never blocks."""
        ...


@runtime_checkable
class SummarySource(Protocol):
    """Per-visit summaries, read by the plan between visits (stream ``analysis``)."""

    def pop_summaries(self) -> list[VisitSummary]:
        """Summaries finished since the last call (any thread)."""
        ...

    def pending_summaries(self) -> int:
        """How many `pop_summaries` would return now (any thread, never blocks)."""
        ...

    def wait_idle(self, timeout: float | None = ...) -> bool:
        """Block until the work given so far is done; False on timeout.

        Called off the RunEngine's loop when the run ends, so the last visits' summaries
        are recorded before the run closes.
        """
        ...


@runtime_checkable
class QueueReporter(Protocol):
    """Queue depths for status displays (`StatusCallback` polls it per visit and tick)."""

    def queue_stats(self) -> Mapping[str, QueueStat]:
        """``{name: depth}`` now; from any thread, cheap, never blocking."""
        ...


@runtime_checkable
class Closable(Protocol):
    """Something that stops working when closed; the plan refuses a closed one."""

    @property
    def closed(self) -> bool:
        """True once closed: it analyses (or provides) nothing more."""
        ...


class AnalysisNeeds(Protocol):
    """What an analyzer's components read, checked against the phases before a run opens.

    Each member is **optional** (see `Requirements.of`): not declared, nothing is needed.
    """

    @property
    def required_channels(self) -> frozenset[str]:
        """Channel presets (by name) every phase must image."""
        ...

    @property
    def required_ref_channels(self) -> frozenset[str]:
        """Channel presets (by name) phases with reference frames must take as ref."""
        ...

    @property
    def required_metadata(self) -> frozenset[str]:
        """Phase metadata keys every phase needs."""
        ...

    @property
    def required_stim_metadata(self) -> frozenset[str]:
        """Phase metadata keys every stimulating phase needs."""
        ...


@runtime_checkable
class ClosedLoopAnalyzer(
    DocumentSink, MaskSource, SummarySource, QueueReporter, Closable, AnalysisNeeds, Protocol
):
    """Every role at once: the closed-loop `Analyzer`, subscribed and plugged into a plan."""


_NEEDS = {
    "channels": "required_channels",
    "ref_channels": "required_ref_channels",
    "metadata": "required_metadata",
    "stim_metadata": "required_stim_metadata",
}


@dataclass(frozen=True)
class Requirements:
    """What an analyzer needs of the experiment's phases (its `AnalysisNeeds`)."""

    channels: frozenset[str] = frozenset()
    """Presets every phase images (`AnalysisNeeds.required_channels`)."""
    ref_channels: frozenset[str] = frozenset()
    """Presets phases with reference frames take as ref."""
    metadata: frozenset[str] = frozenset()
    """Metadata keys every phase has."""
    stim_metadata: frozenset[str] = frozenset()
    """Metadata keys every stimulating phase has."""

    @classmethod
    def of(cls, analyzer: object) -> Requirements:
        """The requirements ``analyzer`` declares (None or undeclared: none).

        The one place the optional `AnalysisNeeds` members are looked up by name.
        """
        if analyzer is None:
            return cls()
        values = {
            field: frozenset(getattr(analyzer, member, None) or ())
            for field, member in _NEEDS.items()
        }
        return cls(**values)


def provides_masks(analyzer: object) -> bool:
    """Whether ``analyzer`` says it provides the stimulation masks.

    True only for a `MaskSource` whose ``provides_masks`` is true, or for an object that
    declares ``provides_masks`` without the rest of `MaskSource`, which
    `contract_problems` refuses (so a plan never runs with one).
    """
    if isinstance(analyzer, MaskSource):
        return bool(analyzer.provides_masks)
    return bool(getattr(analyzer, "provides_masks", False))


def mask_source(analyzer: object) -> MaskSource | None:
    """``analyzer`` as the plan's mask source, or None if the plan's masks come elsewhere."""
    if isinstance(analyzer, MaskSource) and analyzer.provides_masks:
        return analyzer
    return None


def _missing(obj: object, protocol: type) -> list[str]:
    members = sorted(getattr(protocol, "__protocol_attrs__", ()))
    return [m for m in members if not hasattr(obj, m)]


def contract_problems(analyzer: object) -> list[str]:
    """Roles ``analyzer`` takes on but does not fully play (checked where it is plugged in).

    An object that says it provides masks must be a whole `MaskSource`, and one with
    ``pop_summaries`` a whole `SummarySource`: otherwise the run would fail at its first
    stimulation or at its first summary, hours in.
    """
    problems = []
    if provides_masks(analyzer) and not isinstance(analyzer, MaskSource):
        problems.append(
            f"analyzer={analyzer!r} says provides_masks but lacks "
            f"{', '.join(_missing(analyzer, MaskSource))}: a mask source has "
            "provides_masks, mask_timeout (s) and async get_mask(fov, t) (MaskSource)"
        )
    if hasattr(analyzer, "pop_summaries") and not isinstance(analyzer, SummarySource):
        problems.append(
            f"analyzer={analyzer!r} has pop_summaries but lacks "
            f"{', '.join(_missing(analyzer, SummarySource))}: a summary source has "
            "pop_summaries(), pending_summaries() and wait_idle(timeout) (SummarySource)"
        )
    return problems
