"""Where the analyzer's results go: NGFF label images and per-FOV tracks tables.

Layout (docs/decisions/0009-analyzer.md): in the run's zarr store (or ``output``), label
images are NGFF labels ``labels/<name>/0`` shaped like the raw ``camera`` array
``(N, 1, H, W)``; the label image of a visit sits at the raw index of its first imaging
plane, the fired stimulation mask at the index of the stim readout frame, everything else
is 0 (unwritten chunks cost nothing). Tracks are ``tracks/fov_<p>/part-<k>.parquet``,
written per visit through a journal (`_journal.TracksJournal`): appending never rewrites
history (faro rewrote the whole table every frame) and a killed process loses at most the
visit being written.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from numpy.typing import NDArray

from ..devices import grown_length, link_fov_labels, ngff
from ._journal import read_fov

LABEL_DTYPE = np.uint32


class LabelStore:
    """Writes label images into ``<root>/labels/<name>/0`` (NGFF 0.5 labels)."""

    def __init__(self, root: Path, *, pixel_size_um: float = 1.0) -> None:
        self.root = Path(root)
        self.pixel_size_um = pixel_size_um
        self._lock = threading.Lock()
        self._arrays: dict[str, zarr.Array] = {}
        self._group: zarr.Group | None = None
        self._length = 0
        """Frames every label array holds now: they grow together, so any label written so
        far lies within the first `_length` frames of every array (the catalog serves that
        many rows of each; docs/decisions/0053-analysis-outputs-in-tiled.md)."""

    def _labels_group(self) -> zarr.Group:
        if self._group is None:
            root = zarr.open_group(self.root, mode="a", zarr_format=3)
            self._group = root.require_group("labels")  # listed in `ome` by `_array`
        return self._group

    def _array(self, name: str, frame_shape: tuple[int, int]) -> zarr.Array:
        array = self._arrays.get(name)
        if array is not None:
            return array
        labels = self._labels_group()
        group = labels.require_group(name)
        group.attrs["ome"] = ngff.ome_attrs(ngff.label_image(name, self.pixel_size_um))
        h, w = frame_shape
        array = group.create_array(
            "0",
            shape=(self._length, 1, h, w),
            chunks=(1, 1, h, w),
            dtype=LABEL_DTYPE,
            fill_value=0,
            dimension_names=("t", "c", "y", "x"),
            overwrite=True,
        )
        names = [n for n in labels.attrs.get("ome", {}).get("labels", []) if n != name]
        labels.attrs["ome"] = ngff.ome_attrs(ngff.labels_group([*names, name]))
        self._arrays[name] = array
        return array

    def write(self, name: str, index: int, image: NDArray) -> None:
        """Store the 2-D label image ``image`` at raw frame ``index``."""
        image = np.asarray(image)
        with self._lock:
            array = self._array(name, image.shape)
            if self._length <= index:  # grown ahead, together; `finish` trims them
                self._resize(grown_length(index))
            array[index, 0] = image.astype(LABEL_DTYPE, copy=False)

    def _resize(self, length: int) -> None:
        for array in self._arrays.values():
            if array.shape[0] != length:
                array.resize((length, *array.shape[1:]))
        self._length = length

    def finish(self, n_frames: int | None, recorded: int | None = None) -> None:
        """Give every label array the raw array's length, as NGFF readers expect.

        That is the image's own length when the store holds the image (the run's store):
        ``n_frames``, the frames the analysis saw, falls short of it when the run ended in
        the middle of a visit. ``recorded``: the frames the stop document counts; an image
        the camera has not closed yet is longer (it grows in steps and is trimmed when the
        camera unstages, after the stop).
        """
        image = self._image_length()
        if image is not None and recorded:
            image = min(image, recorded)
        lengths = [n for n in (n_frames, image) if n is not None]
        if not lengths:
            return
        with self._lock:
            self._resize(max(lengths))
        link_fov_labels(self.root)  # the per-FOV views' labels, if built (decision 0057)

    def _image_length(self) -> int | None:
        """Frames of the image the labels belong to (its NGFF dataset), if in this store."""
        try:
            attrs = zarr.open_group(self.root, mode="r").attrs.asdict()
            path = attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
            return int(zarr.open_array(self.root / path, mode="r").shape[0])
        except Exception:  # no image here (an analysis store): the analysis's count
            return None

    @property
    def names(self) -> list[str]:
        """Label images written so far."""
        return list(self._arrays)


def read_tracks(root: Path | str, fov: int | None = None) -> pd.DataFrame:
    """The tracks table of a run store (one FOV, or all), sorted by fov, t, particle.

    Consolidated parts and journals alike (`_journal`): a killed or running analysis reads
    up to its last written visit.
    """
    base = Path(root) / "tracks"
    folders = [base / f"fov_{fov:04d}"] if fov is not None else sorted(base.glob("fov_*"))
    frames = [table for folder in folders for table in read_fov(folder)]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["fov", "t", "particle"], ignore_index=True)
