"""ophyd-async devices over any pymmcore-plus core (real hardware or the simulation)."""

from . import _exit  # noqa: F401 - registers the quiet-exit hook
from ._affine import similarity, warp
from ._camera import Camera
from ._channel import ChannelPresets, LightSetting
from ._dmd import DMD, DMDPattern
from ._frames import Frame, FrameCache, find_frame
from ._masks import FixedMask, MaskFacet, MaskProvider
from ._microscope import Microscope
from ._stage import Focus, StageAxis, XYStage
from ._summary import SummaryFacet, SummarySource
from ._worker import CoreWorker
from ._zarr_store import frames_on_disk

__all__ = [
    "DMD",
    "Camera",
    "ChannelPresets",
    "CoreWorker",
    "DMDPattern",
    "FixedMask",
    "Focus",
    "Frame",
    "FrameCache",
    "LightSetting",
    "MaskFacet",
    "MaskProvider",
    "Microscope",
    "StageAxis",
    "SummaryFacet",
    "SummarySource",
    "XYStage",
    "find_frame",
    "frames_on_disk",
    "similarity",
    "warp",
]
