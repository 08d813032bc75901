"""The stateless part of analysing one visit: segment and measure, on any executor.

Kept to module-level functions over picklable components so a process pool or a Dask
cluster can run them; the stateful steps (tracking, stimulation masks, storage) stay on the
analyzer's own thread.

A frame whose mask is awaited is measured in two jobs (docs/decisions/0030): `measure` with
``with_features=False`` gives the labels and positions the tracker and the stimulator need,
so the mask can be published; `measure_features` then runs the feature extractor off the
latency path, and `with_features` joins its columns to the tracked rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..devices import EXPOSURES
from ._protocols import FeatureExtractor, FrameInfo, Labels, Mask, Segmenter
from .components._features import positions
from .components._pixels import Pixels


@dataclass
class FrameResult:
    """Labels and per-cell table of one visit's image stack."""

    labels: Labels
    cells: pd.DataFrame
    extra: dict[str, Labels] = field(default_factory=dict)
    seconds: float = 0.0
    """The job's compute (segmentation, if it segmented, and measurements)."""
    measured: bool = True
    """Whether ``cells`` has the feature extractor's columns; if not (positions only),
    `measure_features` adds them after the mask."""


def measure(
    segmenter: Segmenter,
    features: FeatureExtractor | None,
    image: NDArray,
    info: FrameInfo,
    *,
    with_features: bool = True,
) -> FrameResult:
    """Segment the segmenter's channel of ``image`` (C, Y, X) and measure every cell.

    Without ``with_features`` (or without ``features``) the cells have positions only
    (``label, x, y, area``): what tracking needs.
    """
    start = time.perf_counter()
    labels = segment(segmenter, image[info.channel_index(segmenter.channel)])
    result = measure_labels(features, labels, image, info, with_features=with_features)
    result.seconds = time.perf_counter() - start
    return result


def segment(segmenter: Segmenter, plane: NDArray) -> Labels:
    """The label image of one plane."""
    return np.asarray(segmenter.segment(plane))


@dataclass(frozen=True)
class Segmentation:
    """An early segmentation's labels, and when it ran (epoch s, `time.time`).

    It starts while the visit's other planes are being exposed, so only the part of it
    after the last exposure ended is on the latency path (`on_path_ms`).
    """

    labels: Labels
    started: float
    ended: float

    def on_path_ms(self, exposure_end: float) -> float:
        """Milliseconds it ran after ``exposure_end`` (all of it if that is NaN)."""
        since = self.started if math.isnan(exposure_end) else max(self.started, exposure_end)
        return max(0.0, self.ended - since) * 1000.0


READOUT_HOLD_S = 0.05
"""Longest a readout segmentation waits for the camera's next exposure (`EXPOSURES`)."""


def segment_early(segmenter: Segmenter, plane: NDArray, seen: int | None = None) -> Segmentation:
    """`segment` as a job of its own, started before the stack is in, timed.

    With ``seen`` (the `EXPOSURES` generation at the plane's readout) it first waits, at
    most `READOUT_HOLD_S`, for the next exposure to start or for the plan to await a mask:
    the plan's few ms of Python between two exposures then have the interpreter to
    themselves (decision 0067), and the segmentation still runs during that exposure.
    """
    if seen is not None:
        EXPOSURES.wait_past(seen, READOUT_HOLD_S)
    started = time.time()
    labels = segment(segmenter, plane)
    return Segmentation(labels, started, time.time())


def measure_labels(
    features: FeatureExtractor | None,
    labels: Labels,
    image: NDArray,
    info: FrameInfo,
    *,
    with_features: bool = True,
) -> FrameResult:
    """`measure` for a frame already segmented."""
    start = time.perf_counter()
    if features is not None and with_features:
        cells, extra = features.extract(labels, image, info)
    else:
        cells, extra = positions(labels), {}
    measured = features is None or with_features
    return FrameResult(labels, cells, dict(extra), time.perf_counter() - start, measured)


def measure_features(
    features: FeatureExtractor, labels: Labels, image: NDArray, info: FrameInfo
) -> tuple[pd.DataFrame, dict[str, Labels]]:
    """The feature table and extra label images of an already segmented frame."""
    cells, extra = features.extract(labels, image, info)
    return cells, dict(extra)


def with_features(tracked: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The tracked rows of a frame with the feature columns of ``table``, joined by label.

    Columns in the order a one-job frame has them: the feature table's, then those the
    tracker and the analyzer added (``particle``, ``fov``, ``t``...).
    """
    added = [c for c in tracked.columns if c not in table.columns]
    if np.array_equal(tracked["label"].to_numpy(), table["label"].to_numpy()):
        # one new frame from the columns (a concat or merge costs ~1.5 ms per frame)
        columns = {c: table[c].to_numpy() for c in table.columns}
        columns.update({c: tracked[c].array for c in added})
        return pd.DataFrame(columns, copy=False)
    # an extractor that does not give one row per label in label order (its contract)
    return table.merge(tracked[["label", *added]], on="label", how="right")


def lit_fraction(labels: Labels, cells: pd.DataFrame, mask: Mask) -> NDArray[np.float64]:
    """Fraction of each cell's label pixels the mask lights (1 for the whole field)."""
    if mask is True or mask is False:
        return np.full(len(cells), float(mask))
    cell = Pixels.of(labels)  # the labelled pixels only, in raster order
    ids = cells["label"].to_numpy(int)
    n = max(int(cell.label.max(initial=0)), int(ids.max(initial=0))) + 1
    shone = np.asarray(mask).ravel()[cell.index].astype(np.float64)
    lit = np.bincount(cell.label, weights=shone, minlength=n)
    area = np.bincount(cell.label, minlength=n)
    return lit[ids] / np.maximum(area[ids], 1)
