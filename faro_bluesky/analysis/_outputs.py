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

from ..devices._zarr_store import ome_image_attrs
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

    def _labels_group(self) -> zarr.Group:
        if self._group is None:
            root = zarr.open_group(self.root, mode="a", zarr_format=3)
            self._group = root.require_group("labels")
            known = self._group.attrs.get("ome", {}).get("labels", [])
            self._group.attrs["ome"] = {"version": "0.5", "labels": list(known)}
        return self._group

    def _array(self, name: str, frame_shape: tuple[int, int]) -> zarr.Array:
        array = self._arrays.get(name)
        if array is not None:
            return array
        labels = self._labels_group()
        group = labels.require_group(name)
        attrs = ome_image_attrs("0", self.pixel_size_um, name)
        attrs["image-label"] = {"source": {"image": "../../"}}
        group.attrs["ome"] = attrs
        h, w = frame_shape
        array = group.create_array(
            "0",
            shape=(0, 1, h, w),
            chunks=(1, 1, h, w),
            dtype=LABEL_DTYPE,
            fill_value=0,
            dimension_names=("t", "c", "y", "x"),
            overwrite=True,
        )
        names = [n for n in labels.attrs["ome"]["labels"] if n != name]
        labels.attrs["ome"] = {"version": "0.5", "labels": [*names, name]}
        self._arrays[name] = array
        return array

    def write(self, name: str, index: int, image: NDArray) -> None:
        """Store the 2-D label image ``image`` at raw frame ``index``."""
        image = np.asarray(image)
        with self._lock:
            array = self._array(name, image.shape)
            if array.shape[0] <= index:
                array.resize((index + 1, *array.shape[1:]))
            array[index, 0] = image.astype(LABEL_DTYPE, copy=False)

    def finish(self, n_frames: int | None) -> None:
        """Give every label array the raw array's length, as NGFF readers expect."""
        if n_frames is None:
            return
        with self._lock:
            for array in self._arrays.values():
                if array.shape[0] < n_frames:
                    array.resize((n_frames, *array.shape[1:]))

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
