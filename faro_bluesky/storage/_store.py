"""Read one run's zarr store: raw frames, the analyzer's NGFF labels and tracks tables.

Layout (docs/decisions/0016-run-store-layout.md)::

    <uuid>.zarr/                     OME-Zarr 0.5 image group (axes t, c, y, x)
      camera                         raw frames (N, 1, H, W), acquisition order
      labels/                        NGFF labels group, attrs ome.labels = [names]
        <name>/0                     (N, 1, H, W) uint32: a visit's label image at the raw
                                     index of the segmented plane, 0 elsewhere
      tracks/fov_<p:04d>/part-<k:06d>.parquet
                                     a FOV's tracks table = its parts concatenated in k order
      tracks/fov_<p:04d>/part-<k:06d>.journal
                                     the same rows while the analysis runs, or after it was
                                     killed: a record per visit (`analysis._journal`);
                                     part-<k>.parquet, once there, replaces part-<k>.journal

The raw array's ``t`` axis is the frame index; which (t, p, c, kind) frame i is comes from
the run's events (`Run.frames`). Arrays come back as dask arrays (one chunk per frame), so
nothing is read until computed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import dask.array as da
import pandas as pd
import zarr

from ..devices import path_from_uri

logger = logging.getLogger(__name__)

LABELS = "labels"
TRACKS = "tracks"
TRACK_COLUMNS = {
    "particle": "int64",
    "fov": "int64",
    "t": "int64",
    "time": "float64",
    "x": "float64",
    "y": "float64",
    "area": "float64",
    "stim": "bool",
    "phase": "object",
}
"""The columns every tracks table has (features add more); an empty table has these."""
_FOV_DIR = re.compile(r"fov_(\d+)$")


def _lazy(array: zarr.Array) -> da.Array:
    """A dask view of a zarr array, one chunk per leading index."""
    chunks = (1, *array.shape[1:]) if array.ndim else ()
    return da.from_array(array, chunks=chunks, name=False, asarray=True)


def empty_tracks() -> pd.DataFrame:
    """A tracks table with no rows and the standard columns."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in TRACK_COLUMNS.items()})


class RunStore:
    """The zarr store of one run at ``path`` (``<uuid>.zarr``); raw array ``array_name``."""

    def __init__(self, path: str | Path, array_name: str = "camera") -> None:
        self.path = Path(path)
        self.array_name = array_name

    @classmethod
    def from_uri(cls, uri: str) -> RunStore:
        """The store holding the array at ``uri`` (``file://.../<uuid>.zarr/<array>``)."""
        array = path_from_uri(uri)
        return cls(array.parent, array.name)

    def exists(self) -> bool:
        """Whether the store's raw array is on this machine's disk."""
        return (self.path / self.array_name / "zarr.json").is_file()

    def raw(self) -> da.Array:
        """The raw frames (N, 1, H, W) in acquisition order."""
        return _lazy(zarr.open_array(self.path / self.array_name, mode="r"))

    # -------------------------------------------------------------- labels
    def label_names(self) -> list[str]:
        """Names of the NGFF label images in the store (empty if none)."""
        group = self.path / LABELS
        if not (group / "zarr.json").is_file():
            return []
        attrs = zarr.open_group(group, mode="r").attrs.asdict()
        return list(attrs.get("ome", {}).get("labels", []))

    def labels(self, name: str) -> da.Array:
        """Label image ``name`` (N, 1, H, W), indexed like the raw array."""
        names = self.label_names()
        if name not in names:
            raise ValueError(
                f"name={name!r} is not a label image of {self.path}: choose one of {names}"
                if names
                else f"name={name!r}: {self.path} has no label images yet (analysis not run?)"
            )
        return _lazy(zarr.open_array(self.path / LABELS / name / "0", mode="r"))

    # -------------------------------------------------------------- tracks
    def track_fovs(self) -> list[int]:
        """FOVs with a tracks table."""
        root = self.path / TRACKS
        if not root.is_dir():
            return []
        fovs = (_FOV_DIR.search(p.name) for p in root.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in fovs if m)

    def track_parts(self, fov: int) -> list[Path]:
        """The parts of FOV ``fov``'s table in order: parquet, or journal if not consolidated."""
        from ..analysis import track_part_files  # not at import: analysis pulls skimage

        return track_part_files(self.path / TRACKS / f"fov_{fov:04d}")

    def tracks(self, fov: int | None = None) -> pd.DataFrame:
        """Tracks of FOV ``fov`` (all FOVs if None), by fov, t, particle; empty if none.

        A killed analysis reads up to its last written visit (a torn last record of a
        journal is skipped); a part that cannot be read at all is skipped. Both with a
        warning naming the file.
        """
        from ..analysis import read_track_parts

        fovs = self.track_fovs() if fov is None else [fov]
        folders = [self.path / TRACKS / f"fov_{p:04d}" for p in fovs]
        frames = [table for folder in folders for table in read_track_parts(folder, logger)]
        if not frames:
            return empty_tracks()
        table = pd.concat(frames, ignore_index=True)
        order = [c for c in ("fov", "t", "particle") if c in table]
        return table.sort_values(order, kind="stable", ignore_index=True) if order else table
