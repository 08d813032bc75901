"""Pluggable analysis components: segmenters, trackers, feature extractors, stimulators.

Each implements one protocol of `faro_bluesky.analysis._protocols`; any object with the
same methods works as well.
"""

from ._features import ErkKtrFeatures, RefFeatures, SimpleFeatures
from ._segment import CellposeSegmenter, OtsuSegmenter, StardistSegmenter
from ._stim import (
    CenterCircle,
    FractionOfCells,
    MovingLine,
    NoLight,
    PercentageOfCell,
    TopEdge,
    WholeField,
)
from ._track import NearestNeighbourTracker, TrackpyTracker

__all__ = [
    "CellposeSegmenter",
    "CenterCircle",
    "ErkKtrFeatures",
    "FractionOfCells",
    "MovingLine",
    "NearestNeighbourTracker",
    "NoLight",
    "OtsuSegmenter",
    "PercentageOfCell",
    "RefFeatures",
    "SimpleFeatures",
    "StardistSegmenter",
    "TopEdge",
    "TrackpyTracker",
    "WholeField",
]
