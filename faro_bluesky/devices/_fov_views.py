"""Per-FOV OME-Zarr images of a run store, made of hard links to the raw frames' chunks.

The raw array ``camera`` holds frames in acquisition order (decision 0016). Each FOV also
gets a standard ``(t, c, y, x)`` image, ``<store>/fovs/<fov>/0``, whose chunk ``(t, c)`` is
the *same file* as the raw chunk of that frame (``os.link``): its array has the raw array's
chunk shape and codecs, so the encoded bytes read the same, and no pixel is written twice.
Cells never acquired (a stimulation readout only at some timepoints) have no chunk and read
as the fill value. The analyzer's label images are linked the same way into
``fovs/<fov>/labels/<name>/0`` (``(t, 1, y, x)``, the chunk of the visit's plane that holds
them). ``fovs`` is a bioformats2raw collection listing the FOVs (docs/decisions/
0057-per-fov-ome-zarr.md).

Building is idempotent: a chunk already linked to its source is kept, one that is stale
(its source was rewritten: zarr writes through a temporary file, so a rewrite is a new
inode) or has no source any more is replaced or removed. Where the file system refuses
hard links the chunk file is copied instead (still not re-encoded), counted in the
collection's attributes and logged. A FOV group gets its ``ome`` attributes only after all
its chunks are in place, and the collection its own last, so a reader never takes a half
built view for an image.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import _ngff
from ._chunk_links import array_like, chunk_key, sync_chunk
from ._ngff import ChannelStyle
from ._ome_xml import ome_xml

logger = logging.getLogger(__name__)

FOVS = "fovs"
"""The collection's folder inside a run store."""
FARO = "faro"
"""Attribute namespace of what a view was built from (NGFF readers ignore it)."""


@dataclass(frozen=True)
class ViewChannel:
    """One channel of a FOV view: frames of ``kind`` at position ``c`` with preset ``config``."""

    label: str
    kind: str
    c: int
    config: str
    color: str
    active: bool = True


@dataclass(frozen=True)
class FovView:
    """What one FOV's image is made of.

    :param raw_index: ``(T, C)`` raw frame index of each cell, -1 where none was taken.
    :param plane_time_s: ``(T, C)`` seconds since the run's start of each frame (NaN: none).
    :param t_interval_s: the time axis' scale (the phases' interval, decision 0057).
    :param extra: more JSON for the view's ``faro`` attributes (phases, times per t).
    """

    fov: int
    raw_index: np.ndarray
    channels: tuple[ViewChannel, ...]
    t_interval_s: float
    pixel_size_um: float
    plane_time_s: np.ndarray
    name: str = ""
    stage_um: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_LOCKS: dict[Path, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[None]:
    """Serialise view builds of one store in this process (recorder, analyzer, reader)."""
    key = Path(store).absolute()
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.RLock())
    with lock:
        yield


def write_fov_views(
    store: Path, views: Sequence[FovView], *, array_name: str = "camera"
) -> Counter[str]:
    """Build (or bring up to date) ``<store>/fovs`` for ``views``; counts of chunk actions.

    The counts are ``linked``, ``copied`` (hard link refused), ``kept`` (already linked),
    ``removed`` (its source is gone).
    """
    store = Path(store)
    raw = zarr.open_array(store / array_name, mode="r")
    counts: Counter[str] = Counter()
    with store_lock(store):
        for view in views:
            group = store / FOVS / str(view.fov)
            _write_image(store / array_name, raw, group, view, counts)
            _sync_labels(store, group, view, counts)
        _write_collection(store / FOVS, views, raw, counts)
    if counts["copied"]:
        logger.warning(
            "%s: the file system refused hard links; %d chunk files were copied instead",
            store / FOVS,
            counts["copied"],
        )
    return counts


def link_fov_labels(store: Path) -> Counter[str]:
    """Bring the label images of every built view of ``store`` up to date (none: no-op).

    Called when the analyzer finishes a run's labels, which may be after the views were
    built at the run's stop. Never raises (it runs on the analysis thread): a failure is
    logged, and the raw labels stay as they are.
    """
    store = Path(store)
    counts: Counter[str] = Counter()
    try:
        with store_lock(store):
            for group in _built_views(store / FOVS):
                _sync_labels(store, group, _view_from_attrs(group), counts)
    except Exception:
        logger.exception("the per-FOV label views of %s could not be updated", store)
    return counts


def _view_from_attrs(group: Path) -> FovView:
    """What `_sync_labels` needs of a built view, from its attributes."""
    attrs = zarr.open_group(group, mode="r").attrs.asdict()
    dataset = attrs["ome"]["multiscales"][0]["datasets"][0]
    scale = dataset["coordinateTransformations"][0]["scale"]
    return FovView(
        fov=int(group.name),
        raw_index=np.asarray(attrs[FARO]["raw_index"], dtype=np.int64),
        channels=(),
        t_interval_s=float(scale[0]),
        pixel_size_um=float(scale[-1]),
        plane_time_s=np.empty((0, 0)),
    )


def _built_views(root: Path) -> list[Path]:
    """The FOV groups a finished build listed (the collection's ``OME`` series)."""
    try:
        series = zarr.open_group(root / "OME", mode="r").attrs["ome"]["series"]
    except (FileNotFoundError, KeyError):
        return []
    return [root / str(s) for s in series if (root / str(s) / "zarr.json").is_file()]


# ---------------------------------------------------------------- images
def _write_image(
    raw_path: Path, raw: zarr.Array, group: Path, view: FovView, counts: Counter[str]
) -> None:
    n_t, n_c = view.raw_index.shape
    h, w = raw.shape[-2:]
    array = array_like(raw, group, "0", (n_t, n_c, h, w))
    for (t, c), index in np.ndenumerate(view.raw_index):
        source = raw_path / chunk_key(raw, int(index)) if index >= 0 else None
        counts[sync_chunk(source, group / "0" / chunk_key(array, t, c))] += 1
    styles = [
        ChannelStyle(ch.label, ch.color, _window(raw, view.raw_index[:, c]), ch.active)
        for c, ch in enumerate(view.channels)
    ]
    model = _ngff.image(
        "0", view.name, view.pixel_size_um, t_interval_s=view.t_interval_s, channels=styles
    )
    faro = {
        "fov": view.fov,
        "source": f"../../{raw_path.name}",
        "raw_index": view.raw_index.tolist(),
        "channels": [
            {"label": ch.label, "kind": ch.kind, "c": ch.c, "config": ch.config}
            for ch in view.channels
        ],
        "stage_um": list(view.stage_um) if view.stage_um is not None else None,
        **view.extra,
    }
    zarr.open_group(group, mode="a").attrs.update({"ome": _ngff.ome_attrs(model), FARO: faro})


def _window(raw: zarr.Array, indices: np.ndarray) -> tuple[float, float, float, float]:
    """Contrast from the channel's first frame in this FOV; the dtype's range as limits."""
    info = np.iinfo(raw.dtype) if raw.dtype.kind in "iu" else np.finfo(raw.dtype)
    low, high = float(info.min), float(info.max)
    taken = indices[indices >= 0]
    if not len(taken) or taken[0] >= raw.shape[0]:
        return low, high, low, high
    frame = np.asarray(raw[int(taken[0]), 0])
    start, end = float(frame.min()), float(frame.max())
    return start, max(end, start + 1), low, high


# ---------------------------------------------------------------- labels
def _sync_labels(store: Path, group: Path, view: FovView, counts: Counter[str]) -> None:
    """Link each label image's plane of every visit into ``group/labels/<name>/0``."""
    names = _label_names(store)
    linked: list[str] = []
    for name in names:
        source_path = store / "labels" / name / "0"
        try:
            source = zarr.open_array(source_path, mode="r")
        except FileNotFoundError:
            continue  # listed, not created yet: the analysis is still starting
        n_t = view.raw_index.shape[0]
        label_group = group / "labels" / name
        array = array_like(source, label_group, "0", (n_t, 1, *source.shape[-2:]))
        for t, row in enumerate(view.raw_index):
            # a visit's labels sit at one of its planes (decision 0016): the one with a chunk
            chunks = (source_path / chunk_key(source, int(i)) for i in sorted(row) if i >= 0)
            chunk = next((p for p in chunks if p.is_file()), None)
            counts[sync_chunk(chunk, label_group / "0" / chunk_key(array, t, 0))] += 1
        model = _ngff.label_image(name, view.pixel_size_um, t_interval_s=view.t_interval_s)
        zarr.open_group(label_group, mode="a").attrs["ome"] = _ngff.ome_attrs(model)
        linked.append(name)
    if linked:
        zarr.open_group(group / "labels", mode="a").attrs["ome"] = _ngff.ome_attrs(
            _ngff.labels_group(linked)
        )


def _label_names(store: Path) -> list[str]:
    try:
        attrs = zarr.open_group(store / "labels", mode="r").attrs.asdict()
    except FileNotFoundError:
        return []
    return [str(n) for n in attrs.get("ome", {}).get("labels", [])]


# ------------------------------------------------------------ collection
def _write_collection(
    root: Path, views: Sequence[FovView], raw: zarr.Array, counts: Counter[str]
) -> None:
    series = [str(v.fov) for v in views]
    bf2raw, listing = _ngff.collection(series)
    ome = root / "OME"
    zarr.open_group(ome, mode="a").attrs["ome"] = _ngff.ome_attrs(listing)
    xml = ome_xml(views, raw.dtype, raw.shape[-2:])
    tmp = ome / f".METADATA.ome.xml.{uuid.uuid4().hex}"
    tmp.write_text(xml, encoding="utf-8")
    tmp.replace(ome / "METADATA.ome.xml")
    faro = {"frames": int(raw.shape[0]), "chunks": {k: int(v) for k, v in counts.items()}}
    zarr.open_group(root, mode="a").attrs.update({"ome": _ngff.ome_attrs(bf2raw), FARO: faro})
