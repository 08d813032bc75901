"""The OME-XML of a per-FOV collection (``fovs/OME/METADATA.ome.xml``).

A bioformats2raw collection lists its images twice: in ``OME/zarr.json`` (``series``) and
in this file, which napari-ome-zarr's collection reader (and Bio-Formats) use to find
the series (``Image:<path>`` IDs) and which carries what NGFF 0.5 cannot say: the real
time of every plane (``DeltaT``) when phases of different intervals (or waits) make the
time axis uneven, and the stage position. Written with the standard library: a plane
per acquired frame, nothing else.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._fov_views import FovView

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_PIXEL_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}


def _color(hex_rgb: str) -> str:
    """OME-XML's Color: RGBA packed into a signed 32-bit integer."""
    value = (int(hex_rgb, 16) << 8) | 0xFF
    return str(value - (1 << 32) if value >= 1 << 31 else value)


def ome_xml(views: Sequence[FovView], dtype: np.dtype, shape_yx: tuple[int, int]) -> str:
    """OME-XML with one Image per view, ID ``Image:<fov>`` (the series' path)."""
    ET.register_namespace("", OME_NS)
    ET.register_namespace("xsi", _XSI)
    root = ET.Element(
        f"{{{OME_NS}}}OME",
        {f"{{{_XSI}}}schemaLocation": f"{OME_NS} {OME_NS}/ome.xsd"},
    )
    pixel_type = _PIXEL_TYPES.get(np.dtype(dtype).name)
    if pixel_type is None:
        raise ValueError(f"dtype={dtype} has no OME pixel type: one of {sorted(_PIXEL_TYPES)}")
    h, w = shape_yx
    for view in views:
        image = ET.SubElement(
            root, f"{{{OME_NS}}}Image", {"ID": f"Image:{view.fov}", "Name": view.name}
        )
        n_t, n_c = view.raw_index.shape
        pixels = ET.SubElement(
            image,
            f"{{{OME_NS}}}Pixels",
            {
                "ID": f"Pixels:{view.fov}",
                "DimensionOrder": "XYCZT",
                "Type": pixel_type,
                "SizeX": str(w),
                "SizeY": str(h),
                "SizeZ": "1",
                "SizeC": str(n_c),
                "SizeT": str(n_t),
                "PhysicalSizeX": repr(float(view.pixel_size_um)),
                "PhysicalSizeY": repr(float(view.pixel_size_um)),
                "TimeIncrement": repr(float(view.t_interval_s)),
                "TimeIncrementUnit": "s",
            },
        )
        for c, channel in enumerate(view.channels):
            ET.SubElement(
                pixels,
                f"{{{OME_NS}}}Channel",
                {
                    "ID": f"Channel:{view.fov}:{c}",
                    "Name": channel.label,
                    "SamplesPerPixel": "1",
                    "Color": _color(channel.color),
                },
            )
        ET.SubElement(pixels, f"{{{OME_NS}}}MetadataOnly")
        for t, c in zip(*np.nonzero(view.raw_index >= 0), strict=True):
            plane = {"TheZ": "0", "TheT": str(int(t)), "TheC": str(int(c))}
            delta = float(view.plane_time_s[t, c])
            if not math.isnan(delta):
                plane |= {"DeltaT": repr(delta), "DeltaTUnit": "s"}
            if view.stage_um is not None:
                x, y = view.stage_um
                plane |= {"PositionX": repr(x), "PositionXUnit": "µm"}
                plane |= {"PositionY": repr(y), "PositionYUnit": "µm"}
            ET.SubElement(pixels, f"{{{OME_NS}}}Plane", plane)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
