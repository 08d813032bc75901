"""The stateless part of analysing one visit: segment and measure, on any executor.

Kept to a module-level function over picklable components so a process pool or a Dask
cluster can run it; the stateful steps (tracking, stimulation masks, storage) stay on the
analyzer's own thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._protocols import FeatureExtractor, FrameInfo, Labels, Segmenter
from .components._features import positions


@dataclass
class FrameResult:
    """Labels and per-cell table of one visit's image stack."""

    labels: Labels
    cells: pd.DataFrame
    extra: dict[str, Labels] = field(default_factory=dict)
    seconds: float = 0.0


def measure(
    segmenter: Segmenter,
    features: FeatureExtractor | None,
    image: NDArray,
    info: FrameInfo,
) -> FrameResult:
    """Segment the segmenter's channel of ``image`` (C, Y, X) and measure every cell."""
    start = time.perf_counter()
    labels = np.asarray(segmenter.segment(image[info.channel_index(segmenter.channel)]))
    if features is not None:
        cells, extra = features.extract(labels, image, info)
    else:
        cells, extra = positions(labels), {}
    return FrameResult(labels, cells, dict(extra), time.perf_counter() - start)
