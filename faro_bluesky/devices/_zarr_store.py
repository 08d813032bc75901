"""Frames appended to a zarr array that tiled can serve and OME-Zarr readers open.

Layout of one store (one per camera and run, see docs/decisions/0003-camera-zarr-layout.md):
``<dir>/<uuid>.zarr`` is an OME-Zarr 0.5 image group holding one array named after the
detector's data key, shaped ``(n_frames, 1, height, width)`` with axes ``t, c, y, x``,
one chunk per frame. ``(n_frames, 1, h, w)`` is what tiled expects for a StreamResource
whose DataKey shape is ``[1, h, w]`` (ophyd-async prepends collections_per_event).
"""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import zarr
from numpy.typing import DTypeLike, NDArray


def ome_image_attrs(array_name: str, pixel_size_um: float, name: str) -> dict:
    """NGFF 0.5 ``ome`` attributes for an image group holding ``array_name`` (t, c, y, x)."""
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "t", "type": "time"},
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": array_name,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, 1.0, pixel_size_um, pixel_size_um]}
                        ],
                    }
                ],
            }
        ],
    }


def path_from_uri(uri: str) -> Path:
    """Local path of a ``file://`` URI (as in the stream_resource documents we write)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        raise ValueError(f"uri={uri!r} is not a file URI: only local stores can be opened")
    return Path(unquote(parsed.path))


class ZarrFrameWriter:
    """Append-only writer of ``(n, 1, h, w)`` frames into one zarr v3 array.

    Each append resizes the array to exactly the frames written, so a reader (or tiled)
    never sees unwritten frames, even if the process dies mid-run.
    """

    def __init__(
        self,
        store_path: Path,
        array_name: str,
        shape: tuple[int, int],
        dtype: DTypeLike,
        *,
        pixel_size_um: float = 1.0,
    ) -> None:
        self.store_path = Path(store_path)
        self.array_name = array_name
        self.frame_shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._lock = threading.Lock()
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(self.store_path, mode="a", zarr_format=3)
        group.attrs["ome"] = ome_image_attrs(array_name, pixel_size_um, self.store_path.stem)
        h, w = self.frame_shape
        self._array = group.create_array(
            array_name,
            shape=(0, 1, h, w),
            chunks=(1, 1, h, w),
            dtype=self.dtype,
            fill_value=0,
            dimension_names=("t", "c", "y", "x"),
        )
        self.count = 0

    def append(self, image: NDArray) -> int:
        """Write ``image`` as the next frame; return its index."""
        if image.shape != self.frame_shape or image.dtype != self.dtype:
            raise ValueError(
                f"frame of shape {image.shape} {image.dtype} does not match the store's "
                f"{self.frame_shape} {self.dtype}: camera ROI/binning changed mid-run"
            )
        with self._lock:
            index = self.count
            self._array.resize((index + 1, 1, *self.frame_shape))
            self._array[index, 0] = image
            self.count = index + 1
            return index
