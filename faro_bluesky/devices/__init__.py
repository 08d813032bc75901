"""ophyd-async devices over any pymmcore-plus core (real hardware or the simulation)."""

from ._affine import similarity, warp
from ._camera import Camera
from ._channel import ChannelPresets, LightSetting
from ._dmd import DMD, DMDPattern
from ._frames import Frame, FrameCache
from ._microscope import Microscope
from ._stage import Focus, StageAxis, XYStage
from ._worker import CoreWorker

__all__ = [
    "DMD",
    "Camera",
    "ChannelPresets",
    "CoreWorker",
    "DMDPattern",
    "Focus",
    "Frame",
    "FrameCache",
    "LightSetting",
    "Microscope",
    "StageAxis",
    "XYStage",
    "similarity",
    "warp",
]
