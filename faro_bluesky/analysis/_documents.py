"""From event-model documents to complete visit stacks: which frames, where, and what they are.

The analyzer works from documents only, live or replayed (one code path): a frame is
addressed by its StreamResource URI and StreamDatum index, and described by the ``visit-*``
fields the experiment plan reads with every frame, parsed with `faro_bluesky.schema` (a
missing or unknown field raises `SchemaError`, which the analyzer records). Pixels are
looked up in the camera's in-memory cache when it is in this process, else read from the
zarr store.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from ..devices import find_frame, path_from_uri
from ..schema import (
    FrameField,
    FrameKind,
    MaskField,
    MaskFields,
    SchemaError,
    Stream,
    VisitFields,
)


@dataclass(frozen=True)
class FrameRef:
    """One camera frame of a visit, as the documents describe it."""

    uri: str
    index: int
    fov: int
    t: int
    frame: int
    phase: str
    kind: str
    c: int
    n: int
    channel: str
    time: float
    scheduled: float
    stim: bool
    ref: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    exposure_end: float = math.nan
    """When its exposure ended (epoch s, ``camera-timing-end``; NaN without it): where
    the closed loop's latency starts."""


@dataclass(frozen=True)
class Stack:
    """All ``n`` frames of one kind (image, ref or stim) of one visit, in channel order."""

    frames: tuple[FrameRef, ...]

    @property
    def head(self) -> FrameRef:
        """The first frame (its index is where the visit's label images are stored)."""
        return self.frames[0]

    @property
    def key(self) -> tuple[int, int, str]:
        """(fov, t, kind)."""
        return (self.head.fov, self.head.t, self.head.kind)


def store_path(uri: str) -> Path:
    """The zarr store (group) holding the array at ``uri``."""
    return path_from_uri(uri).parent


class FrameReader:
    """Reads frames by (uri, index): memory first, then the zarr store (arrays cached)."""

    def __init__(self) -> None:
        self._arrays: dict[str, zarr.Array] = {}

    def read(self, ref: FrameRef) -> NDArray:
        """The (Y, X) pixels of ``ref``."""
        cached = find_frame(ref.uri, ref.index)
        if cached is not None:
            return np.asarray(cached.image)
        array = self._arrays.get(ref.uri)
        if array is None:
            array = self._arrays[ref.uri] = zarr.open_array(path_from_uri(ref.uri), mode="r")
        return np.asarray(array[ref.index]).reshape(array.shape[-2:])

    def read_stack(self, stack: Stack) -> NDArray:
        """The (C, Y, X) pixels of ``stack``."""
        return np.stack([self.read(f) for f in stack.frames])


class DocumentIndex:
    """Follows a run's documents and yields each visit stack once its last frame arrives.

    ``feed(name, doc)`` returns the stacks completed by that document (usually none or one),
    and ``fired`` masks as ``(stim FrameRef, mask)`` pairs: a `mask` stream event is matched
    with the stim frames of its FOV that precede it (a fixed mask is recorded once its light
    went out), or else with the stim frames that follow it (an analyzer's mask is recorded
    while its stimulation exposes; so were all masks in runs recorded before 2026-12-01).
    ``early`` lists the frames that arrived while their stack still misses frames (so the
    analyzer can segment a plane while the visit's other planes are being exposed).
    ``projected`` lists the FOVs whose mask event came before its stim frame's (the plan
    records it while the stimulation exposes, decision 0066): the mask is out.
    """

    def __init__(self) -> None:
        self.start: dict[str, Any] = {}
        self._streams: dict[str, str] = {}
        self._resources: dict[str, str] = {}
        self._datums: dict[tuple[str, int], tuple[str, int]] = {}
        self._partial: dict[tuple[int, int, str], list[FrameRef]] = {}
        self._last_mask: NDArray | None = None
        self._unmasked: list[FrameRef] = []  # stim frames whose mask event is still to come
        self.fired: list[tuple[FrameRef, NDArray]] = []
        self.early: list[FrameRef] = []
        self.projected: list[int] = []

    def feed(self, name: str, doc: Mapping[str, Any]) -> list[Stack]:
        """Take one document; return the stacks it completes."""
        if name == "start":
            self.__init__()  # type: ignore[misc]
            self.start = dict(doc)
        elif name == "descriptor":
            self._streams[doc["uid"]] = doc.get("name", Stream.PRIMARY)
        elif name == "stream_resource":
            self._resources[doc["uid"]] = doc["uri"]
        elif name == "stream_datum":
            uri = self._resources.get(doc["stream_resource"])
            if uri is not None:
                start = doc["seq_nums"]["start"]
                for k in range(doc["seq_nums"]["stop"] - start):
                    key = (doc["descriptor"], start + k)
                    self._datums[key] = (uri, doc["indices"]["start"] + k)
        elif name == "event":
            return self._event(doc)
        elif name == "event_page":
            out: list[Stack] = []
            for i, seq in enumerate(doc["seq_num"]):
                event = {
                    "descriptor": doc["descriptor"],
                    "seq_num": seq,
                    "time": doc["time"][i],
                    "data": {k: v[i] for k, v in doc["data"].items()},
                }
                out += self._event(event)
            return out
        return []

    def _event(self, doc: Mapping[str, Any]) -> list[Stack]:
        stream = self._streams.get(doc["descriptor"])
        data = doc["data"]
        if stream == Stream.MASK:
            fired = MaskFields.from_event(data)
            if fired.mask is None:
                raise SchemaError(f"mask event without {MaskField.MASK}: the analyzer needs it")
            mask = np.asarray(fired.mask)
            mine = [r for r in self._unmasked if r.fov == fired.fov]
            if mine:  # the stimulation it lit came first
                self.fired += [(r, mask) for r in mine]
                self._unmasked = [r for r in self._unmasked if r not in mine]
            else:  # recorded while its stimulation exposes: the stim frame follows
                self._last_mask = mask
                self.projected.append(fired.fov)
            return []
        if stream != Stream.PRIMARY:
            return []
        visit = VisitFields.maybe_from_event(data)
        if visit is None or visit.kind is None:  # a stock plan's frame: not a visit's
            return []
        location = self._datums.pop((doc["descriptor"], doc["seq_num"]), None)
        if location is None:
            return []
        ref = FrameRef(
            uri=location[0],
            index=location[1],
            fov=visit.p,
            t=visit.t,
            frame=visit.frame,
            phase=visit.phase,
            kind=visit.kind.value,
            c=visit.c,
            n=visit.n or 1,
            channel=str(data.get(FrameField.CHANNEL, "")),
            time=float(doc.get("time", 0.0)),
            scheduled=visit.scheduled,
            stim=visit.stim,
            ref=visit.ref,
            metadata=visit.metadata,
            exposure_end=float(data.get(FrameField.TIMING_END, math.nan)),
        )
        if ref.kind == FrameKind.STIM:
            if self._last_mask is not None:
                self.fired.append((ref, self._last_mask))
            else:
                self._unmasked.append(ref)
        else:
            self._last_mask = None
        key = (ref.fov, ref.t, ref.kind)
        frames = self._partial.setdefault(key, [])
        frames.append(ref)
        if len(frames) < ref.n:
            self.early.append(ref)
            return []
        del self._partial[key]
        return [Stack(tuple(sorted(frames, key=lambda f: f.c)))]
