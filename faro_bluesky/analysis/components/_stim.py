"""Stimulators: where to shine light on this frame, in camera pixels.

A mask is a bool array of the frame's shape (``info.shape``; the label image's shape when
``info`` does not say), or ``True`` for the whole field. Stimulators do not look at
``info.stim``: whether a frame fires is the plan's decision; a stimulator only says where.

Stimulators that need cells read this frame's rows of ``tracks``: the rows whose ``t``
equals ``info.t`` when ``tracks`` has a ``t`` column, else every row (a table of this frame
alone). Rows are matched to the label image by ``label``.

Each class names the phase metadata it needs in ``required_metadata``, which the plan
checks before the run opens, and what the analyzer must compute before calling it in
``needs`` (`Need`): only `FractionOfCells` waits for the tracker; none needs the feature
columns or earlier frames. All are frozen dataclasses: picklable, stateless, compared by
their settings.

Masks are built from the labelled pixels and the pixels within a few px of them
(`faro_bluesky.analysis.components._pixels`), with a lookup table over labels where the
choice is per cell, never cell by cell in Python and never with a whole-image distance
transform or dilation: ≤ 1.5 ms per 512x512 frame with ~40 cells (issue 11; it was 9-15
ms). They equal the whole-image versions they replace (``expand_labels``, ``regionprops``,
``binary_dilation``; tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .._protocols import FrameInfo, Labels, Mask, Need
from ._pixels import Pixels, dilate, nearest_labels, open_sides, reach

_NONE: frozenset[str] = frozenset()
_NOTHING: frozenset[Need] = frozenset()


def frame_shape(labels: Labels | None, info: FrameInfo) -> tuple[int, int]:
    """The mask shape: ``info.shape``, or the label image's when ``info`` has none."""
    if info.shape[0] > 0 and info.shape[1] > 0:
        return (int(info.shape[0]), int(info.shape[1]))
    if labels is not None and np.ndim(labels) == 2:
        h, w = np.shape(labels)
        return (int(h), int(w))
    raise ValueError("cannot tell the frame's shape: FrameInfo.shape is unset and no 2-D labels")


def current_cells(tracks: pd.DataFrame, info: FrameInfo) -> pd.DataFrame:
    """Rows of ``tracks`` that belong to frame ``info.t`` (see module docstring)."""
    if "t" in tracks.columns:
        this = tracks["t"].to_numpy() == info.t
        return tracks if this.all() else tracks[this]
    return tracks


def _fraction(value: Any, key: str) -> float:
    fraction = float(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{key} must be within 0..1, got {value!r}")
    return fraction


@dataclass(frozen=True)
class WholeField:
    """Light everywhere (``True``)."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = _NOTHING

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """``True``."""
        return True


@dataclass(frozen=True)
class NoLight:
    """No light at all (an all-False mask): a control condition that still 'stimulates'."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = _NOTHING

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """All-False mask."""
        return np.zeros(frame_shape(labels, info), bool)


@dataclass(frozen=True)
class CenterCircle:
    """A disk at the image centre of radius ``radius_fraction * min(height, width)``.

    The default (1/8) is faro's ``CenterCircle``; handy for checking a calibration.
    """

    radius_fraction: float = 1 / 8
    """Radius as a fraction of the shorter image side."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = _NOTHING

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """Pixels strictly inside the circle."""
        h, w = frame_shape(labels, info)
        radius = self.radius_fraction * min(h, w)
        rows, cols = np.ogrid[:h, :w]
        return (rows - h // 2) ** 2 + (cols - w // 2) ** 2 < radius**2


@dataclass(frozen=True)
class PercentageOfCell:
    """Light the front ``percentage`` of each cell along its major axis (faro's).

    Per labelled cell: a cut perpendicular to the major axis, ``(0.5 - percentage) *
    major_axis_length`` from the centroid; the pixels beyond the cut, within the cell
    dilated by ``dilation`` px, are lit. The front is the end of the axis that points up
    the image (towards row 0; towards column 0 for a horizontal cell), a fixed rule where
    faro's side depended on the sign of the fitted orientation.

    The percentage is taken from the phase metadata ``stim_cell_percentage`` when present,
    else from ``percentage``. So it is not required (faro declared it required, then fell
    back to 0.3 anyway), and one stimulator serves phases with different percentages.
    """

    percentage: float = 0.3
    """Default fraction (0..1) of the major axis to light."""
    dilation: int = 5
    """Radius (px) of the disk the cell is dilated by before cutting."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = _NOTHING
    METADATA_KEY: ClassVar[str] = "stim_cell_percentage"

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """Union over cells of the lit front part."""
        shape = frame_shape(labels, info)
        pct = _fraction(info.metadata.get(self.METADATA_KEY, self.percentage), self.METADATA_KEY)
        labels = np.asarray(labels)
        if pct == 0.0 or not labels.any():
            return np.zeros(shape, bool)
        out = np.zeros(labels.shape, bool)
        cells = Pixels.of(labels)
        ids = np.arange(cells.counts.size)
        cy, cx, up, length = _axes(cells, ids)
        cut = (0.5 - pct) * length
        # a pixel is lit if it is within `dilation` px of a cell and beyond that cell's cut;
        # only the cell's own pixels and its edge pixels' neighbourhoods are looked at, and
        # only edges near enough to the cut for a neighbour to lie beyond it
        index, label = cells.index, cells.label
        sides = open_sides(index, cells.flat(), cells.shape, own=True)
        rim = sides != 0
        rim_index, rim_label = index[rim], label[rim]
        reachable = _along(rim_index, rim_label, cells.shape, cy, cx, up) + self.dilation
        near = reachable + 1e-6 > cut[rim_label]  # a hair of slack for rounding: exact
        target, source, _ = reach(rim_index[near], sides[rim][near], cells.shape, self.dilation)
        index = np.concatenate([index, target])
        label = np.concatenate([label, rim_label[near][source]])
        lit = _along(index, label, cells.shape, cy, cx, up) > cut[label]
        out.ravel()[index[lit]] = True
        return out


def _axes(
    cells: Pixels, ids: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per label in ``ids``: centroid, major axis direction and length.

    Centroid row and column, the unit vector ``(row, col)`` of the major axis pointing up
    (then left), and the major axis length, as `skimage.measure.regionprops` computes them
    (``centroid``, ``orientation``, ``axis_major_length`` from the central moments), for
    all labels at once.
    """
    rows, cols = cells.rows_cols()
    area = cells.area(ids).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy, cx = cells.centroid(ids)
        dr, dc = rows - cy[cells.label], cols - cx[cells.label]
        n = ids.size
        a = np.bincount(cells.label, dc * dc, n) / area  # inertia tensor [[a, b], [b, c]]
        c = np.bincount(cells.label, dr * dr, n) / area
        b = -np.bincount(cells.label, dr * dc, n) / area
    orientation = np.where(
        a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, c - a)
    )
    major = (a + c) / 2 + np.sqrt(((a - c) / 2) ** 2 + b**2)
    length = 4 * np.sqrt(np.clip(major, 0, None))
    up = np.stack([np.cos(orientation), np.sin(orientation)])
    flip = (up[0] > 1e-9) | ((np.abs(up[0]) <= 1e-9) & (up[1] > 0))
    up[:, flip] *= -1
    return cy, cx, up, length


def _along(
    index: NDArray[np.intp],
    label: NDArray[np.int64],
    shape: tuple[int, int],
    cy: NDArray[np.float64],
    cx: NDArray[np.float64],
    up: NDArray[np.float64],
) -> NDArray[np.float64]:
    """How far up its cell's major axis each pixel lies, from the cell's centroid (px)."""
    rows, cols = np.divmod(index, shape[1])
    return (rows - cy[label]) * up[0][label] + (cols - cx[label]) * up[1][label]


@dataclass(frozen=True)
class TopEdge:
    """Light the top ``stim_fraction`` of each cell's bounding-box rows, dilated (faro's).

    ``stim_fraction`` (0..1) comes from the phase metadata (required). Useful to pull or
    push migrating cells: the lit edge is the same image side for every cell.
    """

    dilation: int = 3
    """Radius (px) of the disk the lit edges are dilated by."""

    required_metadata: ClassVar[frozenset[str]] = frozenset({"stim_fraction"})
    needs: ClassVar[frozenset[Need]] = _NOTHING

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """Union over cells of their top rows, dilated."""
        shape = frame_shape(labels, info)
        if "stim_fraction" not in info.metadata:
            raise ValueError("TopEdge needs the phase metadata 'stim_fraction' (0..1)")
        fraction = _fraction(info.metadata["stim_fraction"], "stim_fraction")
        labels = np.asarray(labels)
        if fraction == 0.0 or not labels.any():
            return np.zeros(shape, bool)
        out = np.zeros(labels.shape, bool)
        cells = Pixels.of(labels)
        rows, _ = cells.rows_cols()
        # per label: the bounding box's rows [first, last] and the cut-off row, as tables
        first = np.full(cells.counts.size, np.iinfo(np.intp).max)
        last = np.full(cells.counts.size, -1)
        np.minimum.at(first, cells.label, rows)
        np.maximum.at(last, cells.label, rows)
        cutoff = first + fraction * (last + 1 - first)
        top = cells.index[rows < cutoff[cells.label]]
        out.ravel()[dilate(top, cells.shape, self.dilation)] = True
        return out


@dataclass(frozen=True)
class MovingLine:
    """A full-height vertical stripe sweeping left to right, once per ``frames_per_loop``.

    At frame ``f`` (``info.frame``, the frame index within the phase) the stripe's left edge
    is at ``-stripe_width_px + (width + stripe_width_px) * ((f - first_frame) mod n) / n``
    (columns, clipped to the image): it enters from the left edge at the start of a loop
    and has left the image by its end, as faro's ``StimLine``. Before ``first_frame``
    nothing is lit. With ``second_stripe`` a second stripe half a loop behind joins from
    half a loop on (faro's ``StimLine`` always did this).
    """

    stripe_width_px: int
    """Stripe width in camera pixels."""
    frames_per_loop: int
    """Frames for one sweep across the image."""
    first_frame: int = 0
    """Frame at which the first sweep starts."""
    second_stripe: bool = False
    """Add a second stripe, half a loop behind, from half a loop on."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = _NOTHING

    def __post_init__(self) -> None:
        if self.stripe_width_px <= 0 or self.frames_per_loop <= 0:
            raise ValueError(
                "MovingLine needs stripe_width_px > 0 and frames_per_loop > 0, got "
                f"{self.stripe_width_px} and {self.frames_per_loop}"
            )

    def columns(self, frame: int, width: int) -> list[tuple[int, int]]:
        """Lit ``[start, stop)`` column ranges at ``frame`` (sorted) for an image ``width`` wide."""
        elapsed = frame - self.first_frame
        if elapsed < 0:
            return []
        offsets = [0.0]
        if self.second_stripe and elapsed >= self.frames_per_loop / 2:
            offsets.append(self.frames_per_loop / 2)
        out = []
        for offset in offsets:
            phase = ((elapsed - offset) % self.frames_per_loop) / self.frames_per_loop
            start = -self.stripe_width_px + (width + self.stripe_width_px) * phase
            lo, hi = (
                max(int(np.floor(start)), 0),
                min(int(np.floor(start)) + self.stripe_width_px, width),
            )
            if hi > lo:
                out.append((lo, hi))
        return sorted(out)

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """The stripe(s) at ``info.frame``."""
        h, w = frame_shape(labels, info)
        out = np.zeros((h, w), bool)
        for lo, hi in self.columns(info.frame, w):
            out[:, lo:hi] = True
        return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A well-mixed 64-bit hash (splitmix64), elementwise; wraps on overflow by design."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class FractionOfCells:
    """Light the nucleus (grown by ``margin`` px) of a fixed subset of tracked cells.

    Whether a particle is lit depends only on its id and ``seed`` (a hash mapped to 0..1,
    lit when below ``fraction``), so a cell stays in or out of the subset for its whole
    track, new cells join with probability ``fraction``, and the same ids and seed always
    give the same subset (also in a replay). The lit share of a small FOV varies around
    ``fraction``; use `selected` to know which particles were lit. Cells without a
    ``particle`` (untracked) are never lit.
    """

    fraction: float = 0.5
    """Expected share of cells lit (0..1)."""
    seed: int = 0
    """Different seeds pick independent subsets."""
    margin: int = 5
    """Pixels added around each nucleus (expansion stops where neighbours meet)."""

    required_metadata: ClassVar[frozenset[str]] = _NONE
    needs: ClassVar[frozenset[Need]] = frozenset({Need.TRACKS})

    def __post_init__(self) -> None:
        _fraction(self.fraction, "fraction")

    def selected(self, particles: Any) -> NDArray[np.bool_]:
        """Whether each particle id in ``particles`` belongs to the lit subset."""
        ids = np.asarray(particles, dtype=np.int64).astype(np.uint64)
        seed = _splitmix64(np.array([self.seed], dtype=np.int64).astype(np.uint64))
        unit = (_splitmix64(ids ^ seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return unit < self.fraction

    def mask(
        self, labels: Labels, tracks: pd.DataFrame, image: NDArray[Any], info: FrameInfo
    ) -> Mask:
        """The selected cells' nuclei plus margin."""
        shape = frame_shape(labels, info)
        cells = current_cells(tracks, info)
        missing = {"label", "particle"} - set(cells.columns)
        if missing:
            raise ValueError(
                f"FractionOfCells needs tracked cells (columns 'label' and 'particle'); "
                f"missing {sorted(missing)}: configure a tracker"
            )
        particle = cells["particle"].to_numpy(dtype=np.float64, na_value=np.nan)
        tracked = ~np.isnan(particle)
        label = cells["label"].to_numpy()[tracked].astype(np.int64)
        lit_labels = label[self.selected(particle[tracked])]
        if lit_labels.size == 0:
            return np.zeros(shape, bool)
        labels = np.asarray(labels)
        out = np.zeros(labels.shape, bool)
        nuclei = Pixels.of(labels)
        if nuclei.index.size == 0:
            return out
        lit = np.zeros(int(max(nuclei.label.max(), lit_labels.max())) + 1, bool)
        lit[lit_labels] = True  # the per-cell choice as a lookup table over labels
        flat = out.ravel()
        flat[nuclei.index[lit[nuclei.label]]] = True
        if self.margin > 0:  # expand_labels(labels, margin): the nearest nucleus decides
            index, label, _ = nearest_labels(nuclei, self.margin)
            flat[index[lit[label]]] = True
        return out
