"""Typed parsers of events: every reader goes through them, so a mismatch is loud."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Self

from numpy.typing import ArrayLike

from ._names import MASK, VISIT, FrameKind, MaskField, SchemaError, VisitField


def _check(
    keys: Iterable[str], prefix: str, what: str, known: frozenset[str], optional: frozenset[str]
) -> bool:
    """Whether ``keys`` hold ``prefix`` fields; raise unless all are known, none missing.

    A field in ``optional`` may be missing.
    """
    present = {k for k in keys if isinstance(k, str) and k.startswith(prefix)}
    if not present:
        return False
    missing, unknown = known - optional - present, present - known
    if missing or unknown:
        problems = [f"missing {sorted(map(str, missing))}"] if missing else []
        problems += [f"unknown {sorted(map(str, unknown))}"] if unknown else []
        raise SchemaError(
            f"{what} fields do not match faro_bluesky.schema: {'; '.join(problems)} (a run "
            "from another version, or a producer out of step with the schema)"
        )
    return True


_VISIT_KEYS: Final = frozenset(VisitField)
_MASK_KEYS: Final = frozenset(MaskField)
_MASK_OPTIONAL: Final = frozenset(
    {
        MaskField.MASK,
        MaskField.PIXELS_AT,
        MaskField.LABELS_AT,
        MaskField.COMPUTE_MS,
        MaskField.SEGMENT_START,
        MaskField.SEGMENT_END,
        MaskField.STEPS_START,
        MaskField.STEPS_END,
    }
)
"""The image (see `MaskFields.mask`) and the timing fields: runs recorded before those
lack them, and still give every latency stage they can (NaN for the analyzer's own)."""


@dataclass(frozen=True, slots=True)
class VisitFields:
    """The visit tag of one event, parsed: what the frame is and where it belongs."""

    t: int
    p: int
    frame: int
    index: int
    phase: str
    kind: FrameKind | None
    """None in events that are no frame (``per_visit``, ``missed``)."""
    c: int
    n: int
    stim: bool
    ref: bool
    scheduled: float
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def check_keys(keys: Iterable[str]) -> bool:
        """Whether ``keys`` (an event's data keys, a table's columns) carry a visit tag.

        False when no ``visit-*`` key is there (a stock plan's frames); raises
        `SchemaError` when some are but not exactly the `VisitField` set.
        """
        return _check(keys, f"{VISIT}-", "visit", _VISIT_KEYS, frozenset())

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> Self:
        """Parse an event's ``data``; `SchemaError` if its tag is missing or unknown."""
        visit = cls.maybe_from_event(data)
        if visit is None:
            raise SchemaError(f"event has no visit tag (no {VISIT}-* field): {sorted(data)}")
        return visit

    @classmethod
    def maybe_from_event(cls, data: Mapping[str, Any]) -> Self | None:
        """Like `from_event`, but None for an event with no ``visit-*`` field at all."""
        if not cls.check_keys(data):
            return None
        kind = str(data[VisitField.KIND])
        try:
            frame_kind = FrameKind(kind) if kind else None
        except ValueError:
            raise SchemaError(
                f"{VisitField.KIND}={kind!r} is not one of {[str(k) for k in FrameKind]}"
            ) from None
        return cls(
            t=int(data[VisitField.T]),
            p=int(data[VisitField.P]),
            frame=int(data[VisitField.FRAME]),
            index=int(data[VisitField.INDEX]),
            phase=str(data[VisitField.PHASE]),
            kind=frame_kind,
            c=int(data[VisitField.C]),
            n=int(data[VisitField.N]),
            stim=bool(data[VisitField.STIM]),
            ref=bool(data[VisitField.REF]),
            scheduled=float(data[VisitField.SCHEDULED]),
            metadata=json.loads(data[VisitField.METADATA] or "{}"),
        )


@dataclass(frozen=True, slots=True)
class MaskFields:
    """One event of stream ``mask``, parsed."""

    mask: ArrayLike | None
    """As the event holds it (an array live, nested lists from tiled): converting a
    camera-sized mask costs milliseconds, so only readers that need it do. None when the
    event leaves the image out (an externally stored array is not in event data), which
    readers that need the image check. The timing fields are optional too (`MaskTimes`)."""
    fov: int
    t: int
    missed: bool
    wait_ms: float
    pixels_at: float = math.nan
    """When the analyzer had the source's pixels (epoch s); NaN if not recorded."""
    labels_at: float = math.nan
    """When the stimulator's inputs (labels, tracks) were ready (epoch s); NaN if not."""
    compute_ms: float = math.nan
    """Components' compute between the source's exposure end and the mask (ms)."""

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> Self:
        """Parse a ``mask`` event's ``data``; `SchemaError` if a field is missing or unknown."""
        if not _check(data, f"{MASK}-", "mask", _MASK_KEYS, _MASK_OPTIONAL):
            raise SchemaError(f"mask event has no {MASK}-* field: {sorted(data)}")
        return cls(
            mask=data.get(MaskField.MASK),
            fov=int(data[MaskField.FOV]),
            t=int(data[MaskField.T]),
            missed=bool(data[MaskField.MISSED]),
            wait_ms=float(data[MaskField.WAIT_MS]),
            pixels_at=float(data.get(MaskField.PIXELS_AT, math.nan)),
            labels_at=float(data.get(MaskField.LABELS_AT, math.nan)),
            compute_ms=float(data.get(MaskField.COMPUTE_MS, math.nan)),
        )
