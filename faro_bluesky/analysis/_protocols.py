"""The small protocols an analysis component implements, and what each frame comes with.

Components are plain, picklable objects: the stateless ones (segmenter, feature extractors)
run on any `concurrent.futures.Executor` (threads, processes, a Dask cluster); the stateful
tracker and the stimulator run on the analyzer's own thread, one FOV at a time in
acquisition order.

Coordinates: ``x`` is the column and ``y`` the row of a centroid, in camera pixels (faro
called the row "x"; we don't).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

Labels = NDArray[np.integer]
"""A label image: 0 is background, each cell a distinct positive integer."""

Mask = NDArray[np.bool_] | NDArray[np.uint8] | bool
"""A stimulation mask in camera pixels (non-zero = light), or True for the whole field."""


@dataclass(frozen=True)
class FrameInfo:
    """What the analyzer knows about a visit's image stack, from the run's documents."""

    fov: int
    """FOV index (``visit-p``)."""
    t: int
    """Global timepoint (``visit-t``), counted across phases."""
    frame: int = 0
    """Frame index within the phase (``visit-frame``)."""
    phase: str = ""
    """Phase name."""
    channels: tuple[str, ...] = ()
    """Channel preset of each plane of the stack, in order."""
    time: float = 0.0
    """When the first plane was acquired (epoch s)."""
    scheduled: float = 0.0
    """When the visit was scheduled to start (epoch s)."""
    stim: bool = False
    """Whether this visit stimulates (its phase has ``stim_channels`` and this frame is due)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The phase's ``metadata`` (e.g. ``stim_fraction``)."""
    shape: tuple[int, int] = (0, 0)
    """Image (height, width) in camera pixels."""

    def channel_index(self, channel: int | str) -> int:
        """Plane index of ``channel``: an index, or a preset name looked up in `channels`."""
        if isinstance(channel, int):
            return channel
        try:
            return self.channels.index(channel)
        except ValueError:
            raise ValueError(
                f"channel {channel!r} is not among this frame's channels {self.channels}: "
                "set the component's channel= to one of them or to an index"
            ) from None


@runtime_checkable
class Segmenter(Protocol):
    """Image → labels. Stateless: it may run in another process."""

    name: str
    """Name of the label image it produces (e.g. ``"nuclei"``), used for storage."""
    channel: int | str
    """Plane to segment: an index into the stack or a preset name."""

    def segment(self, image: NDArray) -> Labels:
        """Label image (same shape as the 2-D ``image``; 0 = background)."""
        ...


@runtime_checkable
class FeatureExtractor(Protocol):
    """Labels + image stack → one row per cell. Stateless: it may run in another process."""

    def extract(
        self, labels: Labels, image: NDArray, info: FrameInfo
    ) -> tuple[pd.DataFrame, dict[str, Labels]]:
        """Per-cell table and extra label images (e.g. ``{"rings": ...}``).

        The table has one row per label with at least ``label``, ``x``, ``y`` (centroid
        column/row, px) and ``area`` (px), plus feature columns. ``image`` is (C, Y, X).
        """
        ...


@runtime_checkable
class Tracker(Protocol):
    """Links each FOV's cells from frame to frame. Stateful, called in acquisition order."""

    def track(self, fov: int, t: int, cells: pd.DataFrame) -> pd.DataFrame:
        """``cells`` (one row per cell at ``t``) with a ``particle`` column added.

        Particle ids are stable for a cell across frames, gaps and phases of the same FOV,
        unique within the FOV. Called once per (fov, t), t increasing per FOV.
        """
        ...


class Need(enum.Enum):
    """What a stimulator needs besides the frame's label image and pixels.

    The mask of a frame is on the closed loop's latency path (exposure end → mask on the
    DMD): the analyzer computes only what the stimulator declares before calling it, and
    the rest (other features, storage, summaries) after the mask is published.
    """

    TRACKS = "tracks"
    """This frame's cells tracked: ``tracks`` has ``particle`` and the visit's columns
    (``fov``, ``t``, ``phase``...; the tracker runs, in acquisition order per FOV, before
    the mask). Without it, ``tracks`` holds this frame's cells with ``label, x, y, area``
    only, and the mask is computed as soon as the frame is segmented."""
    FEATURES = "features"
    """The feature extractor's columns in this frame's rows (e.g. ``cnr``). Without it they
    are computed after the mask."""
    HISTORY = "history"
    """Earlier frames' rows of this FOV too (the analyzer's last ``history`` frames; implies
    `TRACKS`). Without it, ``tracks`` holds this frame's rows only."""
    STACK = "stack"
    """Every imaging plane of the visit in ``image``. Without it (and without `FEATURES`),
    a stimulation's mask is computed as soon as the segmenter's plane is segmented, while
    the visit's other planes are still being exposed: ``image`` then holds that plane
    alone, shape ``(1, h, w)``, and ``info.channels`` names it."""


@runtime_checkable
class Stimulator(Protocol):
    """Decides where to shine light on this frame."""

    required_metadata: ClassVar[frozenset[str]]
    """Phase metadata keys it needs (checked before the run opens)."""
    needs: ClassVar[frozenset[Need]]
    """What must be computed before `mask` is called (see `Need`); the less, the sooner the
    mask reaches the DMD."""

    def mask(self, labels: Labels, tracks: pd.DataFrame, image: NDArray, info: FrameInfo) -> Mask:
        """The mask for this frame (camera pixels), ``True`` for the whole field.

        ``tracks`` holds this frame's cells, with what `needs` asks for: particle ids and
        the visit's columns (`Need.TRACKS`), feature columns (`Need.FEATURES`), this FOV's
        earlier rows (`Need.HISTORY`; this frame's are those with ``t == info.t``).
        """
        ...


@runtime_checkable
class RefFeatureExtractor(Protocol):
    """Features of the reference-channel image, added to this frame's tracked cells."""

    def extract(
        self, labels: Labels, image: NDArray, cells: pd.DataFrame, info: FrameInfo
    ) -> pd.DataFrame:
        """``cells`` (this frame's rows, with ``particle``) with feature columns added."""
        ...
