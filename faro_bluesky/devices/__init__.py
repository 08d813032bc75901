"""ophyd-async devices over any pymmcore-plus core (real hardware or the simulation)."""

from . import _exit  # noqa: F401 - registers the quiet-exit hook
from . import _ngff as ngff
from ._affine import apply as apply_affine
from ._affine import similarity, warp
from ._camera import Camera
from ._channel import ChannelPresets, LightSetting
from ._dmd import DMD, CameraMask, DMDPattern
from ._exposures import EXPOSURES, ExposureGate
from ._fov_views import FOVS, FovView, ViewChannel, link_fov_labels, store_lock, write_fov_views
from ._frames import Frame, FrameCache, find_frame, on_readout
from ._masks import FixedMask, MaskFacet, MaskProvider, ReadyMasks
from ._microscope import DEFAULT_DATA_DIR, Microscope
from ._patterned import PatternedLight
from ._slm import SLM
from ._stage import Focus, StageAxis, XYStage
from ._summary import SummaryFacet, SummarySource
from ._worker import CoreWorker
from ._zarr_store import (
    frames_on_disk,
    frames_written,
    grown_length,
    ome_image_attrs,
    path_from_uri,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DMD",
    "EXPOSURES",
    "FOVS",
    "SLM",
    "Camera",
    "CameraMask",
    "ChannelPresets",
    "CoreWorker",
    "DMDPattern",
    "ExposureGate",
    "FixedMask",
    "Focus",
    "FovView",
    "Frame",
    "FrameCache",
    "LightSetting",
    "MaskFacet",
    "MaskProvider",
    "Microscope",
    "PatternedLight",
    "ReadyMasks",
    "StageAxis",
    "SummaryFacet",
    "SummarySource",
    "ViewChannel",
    "XYStage",
    "apply_affine",
    "find_frame",
    "frames_on_disk",
    "frames_written",
    "grown_length",
    "link_fov_labels",
    "ngff",
    "ome_image_attrs",
    "on_readout",
    "path_from_uri",
    "similarity",
    "store_lock",
    "warp",
    "write_fov_views",
]
