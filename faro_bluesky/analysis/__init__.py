"""Closed-loop analysis: documents in; segmentation, tracking, features and masks out.

``Analyzer`` is a bluesky callback that never blocks the RunEngine; its components are small
protocols (`Segmenter`, `Tracker`, `FeatureExtractor`, `Stimulator`,
`RefFeatureExtractor`) with implementations in `faro_bluesky.analysis.components`.
"""

from ._analyzer import Analyzer
from ._board import MaskBoard, MaskUnavailable
from ._cluster import ClusterExecutor, cluster_executor
from ._journal import part_files as track_part_files
from ._journal import read_fov as read_track_parts
from ._outputs import read_tracks
from ._protocols import (
    FeatureExtractor,
    FrameInfo,
    Need,
    RefFeatureExtractor,
    Segmenter,
    Stimulator,
    Tracker,
)
from ._records import AnalysisError, VisitSummary

__all__ = [
    "AnalysisError",
    "Analyzer",
    "ClusterExecutor",
    "FeatureExtractor",
    "FrameInfo",
    "MaskBoard",
    "MaskUnavailable",
    "Need",
    "RefFeatureExtractor",
    "Segmenter",
    "Stimulator",
    "Tracker",
    "VisitSummary",
    "cluster_executor",
    "read_track_parts",
    "read_tracks",
    "track_part_files",
]
