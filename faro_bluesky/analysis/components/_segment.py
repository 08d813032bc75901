"""Segmenters: a 2-D image in, a label image out (0 = background).

`OtsuSegmenter` needs nothing beyond scipy/scikit-image and is good enough for a bright
nuclear marker (it is what the simulated microscope's tests use). `CellposeSegmenter` and
`StardistSegmenter` wrap deep-learning models from optional extras: the packages are
imported inside the methods, so importing this module (or `faro_bluesky.analysis`) never
pulls in torch or tensorflow, and a missing extra is reported with the command that
installs it.

Every segmenter is a small dataclass: picklable (it may run in a process pool), compared
by its settings, and stateless apart from a lazily loaded model that is not pickled.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from .._protocols import Labels

LABEL_DTYPE = np.int32
"""dtype of every label image produced here."""

_EIGHT = np.ones((3, 3), bool)
#: smoothing (px) of the distance transform before looking for nucleus centres; without it
#: the pixelated ridge of an elongated nucleus has two maxima and the nucleus is cut in two
_DISTANCE_SIGMA = 1.0
#: margin (px) around an object's bounding box when it is split on its own: the distance
#: transform needs 1 px of background, its smoothing reaches 4σ (scipy's default truncation)
_SPLIT_PAD = int(4.0 * _DISTANCE_SIGMA + 0.5) + 1


def _gaussian_weights(sigma: float, truncate: float = 4.0) -> NDArray[np.float64]:
    """The 1-D kernel `scipy.ndimage.gaussian_filter` correlates with, built as it builds it."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return (phi / phi.sum())[::-1].copy()


_DISTANCE_WEIGHTS = _gaussian_weights(_DISTANCE_SIGMA)


def _smooth_distance(distance: NDArray[np.float64]) -> NDArray[np.float64]:
    """``gaussian_filter(distance, _DISTANCE_SIGMA)``, bit for bit, for a small box.

    The same two `scipy.ndimage.correlate1d` passes with the same kernel, without
    `gaussian_filter`'s per-call set-up, which is most of its cost on an object's box
    (~25 µs of ~35; once per object, ~40 objects per frame: issue 11).
    """
    out = np.empty_like(distance)
    ndimage.correlate1d(distance, _DISTANCE_WEIGHTS, 0, out, "reflect")
    ndimage.correlate1d(out, _DISTANCE_WEIGHTS, 1, out, "reflect")
    return out


def _as_2d(image: NDArray[Any], who: str) -> NDArray[np.float32]:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(
            f"{who}.segment() takes one 2-D plane, got shape {img.shape}; "
            "pass image[channel] (the analyzer does this with the segmenter's channel=)"
        )
    return img.astype(np.float32, copy=False)


def _remove_small(labels: NDArray[np.integer], min_area: int) -> NDArray[np.integer]:
    """Set objects smaller than ``min_area`` pixels to background (in place) and return."""
    if min_area > 1 and labels.any():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_area
        small[0] = False
        labels[small[labels]] = 0
    return labels


def _sequential(labels: NDArray[np.integer]) -> Labels:
    """Labels renumbered 1..n in the label dtype."""
    present = np.unique(labels)
    present = present[present > 0]
    if present.size == 0:
        return np.zeros(labels.shape, LABEL_DTYPE)
    lookup = np.zeros(int(present[-1]) + 1, LABEL_DTYPE)
    lookup[present] = np.arange(1, present.size + 1, dtype=LABEL_DTYPE)
    return lookup[labels]


def _padded_box(box: tuple[slice, slice], shape: tuple[int, ...], pad: int) -> tuple[slice, ...]:
    """``box`` grown by ``pad`` px on every side, clipped to an image of ``shape``."""
    return tuple(
        slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, shape, strict=True)
    )


def _at_most_one_peak(surface: NDArray[np.floating]) -> bool:
    """True if ``surface`` has at most one regional maximum above 0 (8-connected).

    Every regional maximum is an 8-connected group of pixels that are ≥ all their neighbours
    and is not 8-adjacent to any other such pixel (its neighbours are all lower), so the number
    of groups of such pixels bounds the number of regional maxima from above. Pixels at 0 (the
    background plateau) are never part of a regional maximum of a surface that is positive
    somewhere, and are left out.
    """
    # maximum_filter(surface, size=3, mode="nearest") as the two 1-D passes it makes
    highest = ndimage.maximum_filter1d(surface, 3, 0, mode="nearest")
    ndimage.maximum_filter1d(highest, 3, 1, highest, mode="nearest")
    peaks = surface == highest
    peaks &= surface > 0
    if np.count_nonzero(peaks) <= 1:
        return True
    return ndimage.label(peaks, structure=_EIGHT)[1] <= 1


@dataclass(frozen=True)
class OtsuSegmenter:
    """Gaussian smoothing, Otsu threshold, connected components, small-object removal.

    With ``split_touching`` a distance-transform watershed cuts touching nuclei apart: each
    maximum of the (slightly smoothed) distance to the background that stands at least
    ``split_depth`` px above the saddle to its neighbour seeds one nucleus. faro's
    ``OtsuSegmentator`` did not split, and merged neighbours then shared one track.

    Splitting works on each connected object on its own, in a box around it: an object whose
    smoothed distance has a single peak cannot have two seeds and is kept as it is without
    the h-maxima and watershed steps (most nuclei), so the cost grows with the number of
    objects, not with the image size.

    An image without objects (empty, constant, saturated, a dark frame of pure noise) gives
    no cells: Otsu always finds a threshold, even in noise, and a segmenter that trusted it
    would report noise blobs as cells (and a stimulator would light them).
    """

    name: str = "nuclei"
    """Name of the label image (storage key)."""
    channel: int | str = 0
    """Plane to segment: an index into the stack or a preset name."""
    sigma: float = 1.0
    """Gaussian smoothing (px) before thresholding; 0 for none."""
    min_area: int = 30
    """Objects smaller than this (px) are dropped (noise, debris, watershed crumbs)."""
    split_touching: bool = True
    """Split touching nuclei with a distance-transform watershed."""
    split_depth: float = 1.0
    """How much deeper (px of distance) a nucleus centre must be than the neck to its
    neighbour to be split off; larger splits less."""
    min_snr: float = 3.0
    """The foreground must be brighter than the background by this many standard
    deviations of the background (raw pixels); otherwise the image counts as empty."""

    def segment(self, image: NDArray[Any]) -> Labels:
        """Label image of ``image`` (same shape, `LABEL_DTYPE`, 0 = background).

        Labels are 1..n in raster order of the objects' first pixels; the parts of a split
        object are numbered consecutively.
        """
        img = _as_2d(image, type(self).__name__)
        out = np.zeros(img.shape, LABEL_DTYPE)
        if img.size == 0:
            return out
        smooth = ndimage.gaussian_filter(img, self.sigma) if self.sigma > 0 else img
        lo, hi = float(smooth.min()), float(smooth.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
            return out
        foreground = smooth > threshold_otsu(smooth)
        if not self._contrasted(img, foreground):
            return out
        labels, n = ndimage.label(foreground)
        if n == 0:
            return out
        keep = np.bincount(labels.ravel(), minlength=n + 1) >= self.min_area
        keep[0] = False
        lookup = np.zeros(n + 1, LABEL_DTYPE)
        if not self.split_touching:
            lookup[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=LABEL_DTYPE)
            return lookup[labels]
        parts: list[tuple[tuple[slice, ...], NDArray[np.integer]]] = []
        boxes = ndimage.find_objects(labels)
        next_label = 1
        for k in np.flatnonzero(keep):
            box = _padded_box(boxes[k - 1], labels.shape, _SPLIT_PAD)
            pieces = self._split(labels[box] == k)
            if pieces is None:
                lookup[k] = next_label
                next_label += 1
            else:
                pieces[pieces > 0] += next_label - 1
                next_label = max(next_label, int(pieces.max()) + 1)  # all crumbs: none added
                parts.append((box, pieces))
        out = lookup[labels]
        for box, pieces in parts:
            inside = pieces > 0
            out[box][inside] = pieces[inside]
        return out

    def _contrasted(self, img: NDArray[np.float32], foreground: NDArray[np.bool_]) -> bool:
        background = img[~foreground]
        if background.size == 0 or background.size == img.size:
            return False
        gap = float(img[foreground].mean()) - float(background.mean())
        return gap > self.min_snr * float(background.std())

    def _split(self, mask: NDArray[np.bool_]) -> NDArray[np.int32] | None:
        """One object (``mask``, with background around it) cut at its necks.

        ``None`` if it stays whole; otherwise its parts labelled 1..m in ``mask``'s box, with
        parts smaller than ``min_area`` set to 0.
        """
        distance = _smooth_distance(ndimage.distance_transform_edt(mask))
        if _at_most_one_peak(distance):
            return None  # at most one seed: the watershed would return the object as it is
        # an object too thin to have a maximum `split_depth` deep gets no seed: keep it whole
        markers, n = ndimage.label(h_maxima(distance, self.split_depth), structure=_EIGHT)
        if n <= 1:
            return None
        pieces = watershed(-distance, markers, mask=mask)
        sizes = np.bincount(pieces.ravel())
        sizes[0] = 0
        if np.count_nonzero(sizes) <= 1:
            return None  # the seeds but one lie outside the object
        renumber = np.zeros(sizes.size, np.int32)
        big = sizes >= max(self.min_area, 1)
        renumber[big] = np.arange(1, np.count_nonzero(big) + 1, dtype=np.int32)
        return renumber[pieces]


def _import_extra(module: str, extra: str, who: str) -> Any:
    """Import ``module`` of an optional extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{who} needs the optional package {extra!r}, which is not installed: "
            f"install it with `uv sync --extra {extra}` (or `pip install faro-bluesky[{extra}]`)"
        ) from err


#: Models loaded in this process, by segmenter class and settings. A segmenter run by a
#: process pool or a cluster arrives as a fresh copy with every job (pickled without its
#: model): without this, a worker would load the model again for every frame.
_MODELS: dict[Hashable, Any] = {}
_MODELS_LOCK = threading.Lock()


def _shared_model(owner: _LazyModel) -> Any:
    """The model of ``owner``'s class and settings: loaded once per process."""
    key = (type(owner), tuple((f.name, getattr(owner, f.name)) for f in fields(owner) if f.init))
    try:
        hash(key)
    except TypeError:  # a setting that cannot be a key: this instance keeps its own
        return owner._load()
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = owner._load()
        return _MODELS[key]


@dataclass
class _LazyModel:
    """Base of the model wrappers: a model loaded on first use and never pickled.

    It loads once per process and settings (`_shared_model`), not once per copy.
    """

    _model: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def _load(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def load(self) -> Any:
        """Load the model now (call before a run: a cold start can take a minute)."""
        with self._lock:
            if self._model is None:
                self._model = _shared_model(self)
            return self._model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@dataclass
class CellposeSegmenter(_LazyModel):
    """Cellpose (``uv sync --extra cellpose``); works with cellpose 3 and 4.

    The model is created on the first `segment` (or `load`) call in the process that runs
    it; a pickled copy carries only the settings.
    """

    name: str = "nuclei"
    """Name of the label image (storage key)."""
    channel: int | str = 0
    """Plane to segment: an index into the stack or a preset name."""
    model: str | None = None
    """Built-in model name (``"cyto3"``, ``"nuclei"``, ``"cpsam"``) or a path to a custom
    model; ``None`` is the installed cellpose's default."""
    diameter: float | None = None
    """Expected object diameter (px); ``None`` lets cellpose estimate or use its default."""
    flow_threshold: float = 0.4
    """Cellpose flow error threshold."""
    cellprob_threshold: float = 0.0
    """Cellpose cell probability threshold."""
    min_size: int = 50
    """Objects smaller than this (px) are dropped."""
    gpu: bool = True
    """Use a GPU when cellpose finds one."""

    def _load(self) -> Any:
        models = _import_extra("cellpose.models", "cellpose", type(self).__name__)
        kwargs: dict[str, Any] = {"gpu": self.gpu}
        if self.model is not None:
            if _cellpose_major() >= 4 or os.path.exists(self.model):
                kwargs["pretrained_model"] = self.model
            else:
                kwargs["model_type"] = self.model
        return models.CellposeModel(**kwargs)

    def segment(self, image: NDArray[Any]) -> Labels:
        """Label image of ``image`` (same shape, `LABEL_DTYPE`, 0 = background)."""
        img = _as_2d(image, type(self).__name__)
        model = self.load()
        kwargs: dict[str, Any] = {
            "diameter": self.diameter,
            "flow_threshold": self.flow_threshold,
            "cellprob_threshold": self.cellprob_threshold,
            "min_size": self.min_size,
        }
        if _cellpose_major() < 4:
            kwargs["channels"] = [0, 0]
        masks = model.eval(img, **kwargs)[0]
        return _sequential(_remove_small(np.asarray(masks).astype(LABEL_DTYPE), self.min_size))


def _cellpose_major() -> int:
    from importlib.metadata import version

    return int(version("cellpose").split(".")[0])


@dataclass
class StardistSegmenter(_LazyModel):
    """StarDist 2-D (``uv sync --extra stardist``), for star-convex nuclei.

    The image is percentile-normalised (``norm_min``..``norm_max``) as StarDist expects.
    """

    name: str = "nuclei"
    """Name of the label image (storage key)."""
    channel: int | str = 0
    """Plane to segment: an index into the stack or a preset name."""
    model: str = "2D_versatile_fluo"
    """Name of a pretrained StarDist model."""
    model_path: str | None = None
    """Folder of a custom model (overrides ``model``)."""
    norm_min: float = 1.0
    """Lower percentile for normalisation."""
    norm_max: float = 99.8
    """Upper percentile for normalisation."""
    prob_thresh: float | None = None
    """Object probability threshold; ``None`` is the model's own."""
    min_size: int = 0
    """Objects smaller than this (px) are dropped."""

    def _load(self) -> Any:
        models = _import_extra("stardist.models", "stardist", type(self).__name__)
        if self.model_path is not None:
            path = os.path.abspath(self.model_path)
            return models.StarDist2D(
                None, name=os.path.basename(path), basedir=os.path.dirname(path)
            )
        return models.StarDist2D.from_pretrained(self.model)

    def segment(self, image: NDArray[Any]) -> Labels:
        """Label image of ``image`` (same shape, `LABEL_DTYPE`, 0 = background)."""
        img = _as_2d(image, type(self).__name__)
        model = self.load()
        csbdeep = _import_extra("csbdeep.utils", "stardist", type(self).__name__)
        normed = csbdeep.normalize(img, self.norm_min, self.norm_max)
        labels, _ = model.predict_instances(normed, prob_thresh=self.prob_thresh)
        return _sequential(_remove_small(np.asarray(labels).astype(LABEL_DTYPE), self.min_size))
