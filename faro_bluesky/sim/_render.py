"""Rendering a field of view of `SimSample` into expected photon counts per channel.

Cheap per frame (decision 0047): each cell's soft nucleus/cell profiles (its "stamp") are
cached by shape and sub-pixel position, which drifting cells keep for many frames, and
images are composed in float32 with per-cell factors.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._sample import Cells, SimSample

# expected counts per ms at light level 100 (see `render`)
NUCLEAR_MARKER = 30.0
KTR = 30.0
BRIGHTFIELD = 60.0
STIM_REFLECTION = 40.0
DMD_BLEED = 0.01  # fraction of DMD light that leaks through "off" mirrors

CHANNEL_KINDS = ("BF", "miRFP", "ERKKTR", "Cyan")

SUBPIXEL = 16
"""Cell centres are rendered at the nearest 1/SUBPIXEL pixel, so that stamps can be reused."""
STAMP_CACHE_SIZE = 2048
"""Stamps kept per renderer (~12 KB each): one FOV needs ~60-80, a few dozen FOVs fit."""


@dataclass(frozen=True, slots=True)
class Stamp:
    """Where one cell lies in the image: its box and its soft nucleus/cell profiles.

    The profiles are read-only views into the renderer's stamp cache.
    """

    index: int  # row of the cell in its `Cells`
    rows: slice
    cols: slice
    nucleus: NDArray[np.float32]
    cell: NDArray[np.float32]


Profiles = tuple[NDArray[np.float32], NDArray[np.float32]]


def cell_profiles(
    nucleus_px: NDArray[np.float64],
    elongation: NDArray[np.float64],
    angle: NDArray[np.float64],
    cell_factor: float,
    offset: NDArray[np.float64],
) -> list[Profiles]:
    """Soft (anti-aliased) ``(nucleus, cell)`` profiles, 0..1, of a batch of cells.

    Cell i's box is ``2 * reach + 1`` pixels square, ``reach = ceil(nucleus_px[i] *
    cell_factor + 2)``, and its centre lies ``offset[i] = (x, y)`` pixels (0 <= x, y < 1)
    right of and below the box's middle pixel. Nucleus and cell are ellipses (major
    half-axes ``nucleus_px`` and ``cell_factor`` times it) whose edges ramp linearly over
    about a pixel; the cell profile includes its nucleus. One vectorised pass for the
    whole batch (in boxes of the largest reach, cropped after), in float32: per cell,
    ~20 numpy calls on a ~40x40 box would cost more in call overhead than in arithmetic.
    """
    n = len(nucleus_px)
    if n == 0:
        return []
    rn = np.asarray(nucleus_px, float)
    reach = np.ceil(rn * cell_factor + 2).astype(np.int64)
    big = int(reach.max())
    grid = np.arange(-big, big + 1, dtype=float)
    dx = grid[None, :] - np.asarray(offset, float)[:, :1]  # (n, size): column - centre
    dy = grid[None, :] - np.asarray(offset, float)[:, 1:]  # (n, size): row - centre
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]

    def outer(rows: NDArray[np.float64], cols: NDArray[np.float64]) -> NDArray[np.float32]:
        # (n, size) row terms + (n, size) column terms -> (n, size, size) boxes
        return rows.astype(np.float32)[:, :, None] + cols.astype(np.float32)[:, None, :]

    def profile(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float32]:
        # clip((1 - |(u / a, v / b)|) b + 0.5, 0, 1) = clip(b + 0.5 - |(u b / a, v)|, 0, 1),
        # u, v: offsets along the ellipse's axes (u = dx cos + dy sin, v = -dx sin + dy cos)
        k = (b / a)[:, None]
        u = outer(dy * (sin * k), dx * (cos * k))
        v = outer(dy * cos, -dx * sin)
        u *= u
        v *= v
        u += v
        np.sqrt(u, out=u)
        np.subtract((b + 0.5).astype(np.float32)[:, None, None], u, out=u)
        return np.clip(u, 0, 1, out=u)

    el = np.asarray(elongation, float)
    nucleus = profile(rn, rn / el)
    a_c = rn * cell_factor
    cell = np.maximum(profile(a_c, a_c / np.sqrt(el)), nucleus)
    out = []
    for i, r in enumerate(reach.tolist()):
        box = slice(big - r, big + r + 1)
        out.append((nucleus[i, box, box].copy(), cell[i, box, box].copy()))
    return out


_Key = tuple[float, float, float, int, int]


class _StampCache:
    """Bounded LRU of `cell_profiles` by cell shape and quantised sub-pixel offset.

    Cells drift by at most ~0.2 px/s, so most of a frame's cells have the same key as in
    the previous frame: a hit costs a dict lookup instead of computing two ~40x40
    profiles. Misses (~200 per sample second for a FOV of ~60 drifting cells, and every
    cell after a stage move) are computed in one batch per frame.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[_Key, Profiles] = OrderedDict()
        self._lock = threading.Lock()  # the camera thread and ground_truth() may overlap

    def get(self, keys: list[_Key], cell_factor: float) -> list[Profiles]:
        """The profiles of ``keys`` = ``(nucleus_px, elongation, angle, qx, qy)``."""
        entries = self._entries
        with self._lock:
            out: list[Profiles | None] = [entries.get(key) for key in keys]
            missing = [i for i, found in enumerate(out) if found is None]
            if missing:
                rn, el, ang, qx, qy = np.array([keys[i] for i in missing]).T
                offsets = np.stack([qx, qy], axis=1) / SUBPIXEL
                for i, (nucleus, cell) in zip(
                    missing, cell_profiles(rn, el, ang, cell_factor, offsets), strict=True
                ):
                    nucleus.flags.writeable = cell.flags.writeable = False
                    out[i] = entries[keys[i]] = (nucleus, cell)
            for key in keys:
                entries.move_to_end(key)
            while len(entries) > self.size:
                entries.popitem(last=False)
        return out  # type: ignore[return-value]  # every None was filled

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What really is in a field of view (cells whose centre is inside the image)."""

    ids: NDArray[np.int64]
    """Stable id of each cell (same cell, same id, in every frame and FOV)."""
    xy_px: NDArray[np.float64]
    """``(n, 2)`` centre of each cell in image pixels as ``(x=col, y=row)``."""
    activity: NDArray[np.float64]
    """Activity 0..1 of each cell."""
    erk_ratio: NDArray[np.float64]
    """True ERK-KTR cytoplasm/nucleus ratio of each cell."""
    nuclei: NDArray[np.int32]
    """Label image of the nuclei: pixel value k+1 is cell ``ids[k]``."""
    cells: NDArray[np.int32]
    """Label image of whole cells (nucleus + cytoplasm), same numbering."""


class FieldRenderer:
    """Renders the cells seen by a camera of ``shape`` pixels at a stage position."""

    def __init__(self, sample: SimSample, shape: tuple[int, int], pixel_size_um: float) -> None:
        self.sample = sample
        self.shape = shape
        self.pixel_size_um = pixel_size_um
        self._cache = _StampCache(STAMP_CACHE_SIZE)

    def _box(self, center_um: tuple[float, float], margin_px: float) -> tuple[float, ...]:
        h, w = self.shape
        px = self.pixel_size_um
        half_w, half_h = (w / 2 + margin_px) * px, (h / 2 + margin_px) * px
        x, y = center_um
        return x - half_w, y - half_h, x + half_w, y + half_h

    def to_pixels(self, xy_um: NDArray, center_um: tuple[float, float]) -> NDArray:
        """World µm -> image ``(x=col, y=row)`` pixels for a FOV centred at ``center_um``."""
        h, w = self.shape
        xy = (np.asarray(xy_um, float) - np.asarray(center_um)) / self.pixel_size_um
        return xy + np.array([(w - 1) / 2, (h - 1) / 2])

    def cells(self, center_um: tuple[float, float], t: float, *, margin_px: float) -> Cells:
        """Cells within ``margin_px`` of the image at sample time ``t``."""
        return self.sample.cells_in(*self._box(center_um, margin_px), t)

    def stamps(self, cells: Cells, center_um: tuple[float, float]) -> list[Stamp]:
        """Soft (anti-aliased) nucleus and cell profiles of ``cells`` in this image.

        Centres are placed at the nearest 1/`SUBPIXEL` pixel (the profiles then come from
        the stamp cache); a stamp's box is clipped to the image.
        """
        h, w = self.shape
        factor = self.sample.params.cell_radius_factor
        q = np.rint(self.to_pixels(cells.xy_um, center_um) * SUBPIXEL).astype(np.int64)
        whole = q // SUBPIXEL  # pixel holding the (quantised) centre
        sub = q - whole * SUBPIXEL  # offset within it, in 1/SUBPIXEL
        rn = cells.nucleus_um / self.pixel_size_um
        reach = np.ceil(rn * factor + 2).astype(np.int64)
        top, left = whole[:, 1] - reach, whole[:, 0] - reach
        size = 2 * reach + 1
        keys = list(
            zip(
                rn.tolist(),
                cells.elongation.tolist(),
                cells.angle.tolist(),
                sub[:, 0].tolist(),
                sub[:, 1].tolist(),
                strict=True,
            )
        )
        inside = (top < h) & (top + size > 0) & (left < w) & (left + size > 0)
        rows = np.flatnonzero(inside).tolist()
        profiles = self._cache.get([keys[i] for i in rows], factor)
        out = []
        for i, r0, c0, n, (nucleus, cell) in zip(
            rows,
            top[rows].tolist(),
            left[rows].tolist(),
            size[rows].tolist(),
            profiles,
            strict=True,
        ):
            if r0 >= 0 and c0 >= 0 and r0 + n <= h and c0 + n <= w:  # the usual case
                out.append(Stamp(i, slice(r0, r0 + n), slice(c0, c0 + n), nucleus, cell))
                continue
            a, b = max(-r0, 0), min(h - r0, n)  # rows of the box inside the image
            c, d = max(-c0, 0), min(w - c0, n)
            out.append(
                Stamp(
                    i,
                    slice(r0 + a, r0 + b),
                    slice(c0 + c, c0 + d),
                    nucleus[a:b, c:d],
                    cell[a:b, c:d],
                )
            )
        return out

    def render(
        self,
        kind: str,
        cells: Cells,
        stamps: list[Stamp],
        *,
        light: NDArray[np.floating] | None = None,
        scale: float = 1.0,
        out: NDArray[np.float32] | None = None,
    ) -> NDArray[np.float32]:
        """Expected counts per ms at light level 100, times ``scale``, for channel ``kind``.

        ``light`` is the stimulation light in camera pixels (0..1), used by ``"Cyan"``.
        ``scale`` (level / 100 x exposure in ms) is applied to per-cell factors rather than
        to the finished image, which saves a pass over it. ``out``: a float32 image of this
        shape to render into (the camera reuses one).
        """
        scale = float(scale)
        img = np.empty(self.shape, np.float32) if out is None else out
        if kind == "miRFP":
            img.fill(scale)
            marker = cells.marker.tolist()  # Python floats keep the arithmetic in float32
            for s in stamps:
                k = NUCLEAR_MARKER * marker[s.index] * scale
                # the marker in the nucleus, 5% of it in the cytoplasm
                img[s.rows, s.cols] += s.nucleus * (0.95 * k) + s.cell * (0.05 * k)
        elif kind == "ERKKTR":
            img.fill(scale)
            ratio = self.sample.erk_ratio(cells.activity).tolist()
            ktr = cells.ktr.tolist()
            for s in stamps:
                r = ratio[s.index]
                nuc = KTR * ktr[s.index] / (1 + r) * scale
                # nuc in the nucleus, nuc * r in the cytoplasm
                img[s.rows, s.cols] += s.nucleus * (nuc * (1 - r)) + s.cell * (nuc * r)
        elif kind == "BF":
            img.fill(BRIGHTFIELD * scale)
            k = BRIGHTFIELD * scale
            for s in stamps:
                c = s.cell  # -k (0.12 cell + 0.08 nucleus - 0.1 edge), edge = 4 cell (1 - cell)
                img[s.rows, s.cols] += c * (0.28 * k - (0.4 * k) * c) - s.nucleus * (0.08 * k)
        elif kind == "Cyan":
            if light is None:
                img.fill(0.5 * scale)
            else:  # 0.5 + STIM_REFLECTION * (DMD_BLEED + (1 - DMD_BLEED) * light)
                np.multiply(light, (1 - DMD_BLEED) * STIM_REFLECTION * scale, out=img)
                img += (0.5 + DMD_BLEED * STIM_REFLECTION) * scale
            for s in stamps:
                img[s.rows, s.cols] += s.cell * (2.0 * scale)
        else:
            raise ValueError(f"unknown channel kind {kind!r}; known: {CHANNEL_KINDS}")
        return img

    def lit_fraction(
        self, cells: Cells, stamps: list[Stamp], light: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Fraction of each cell's area under ``light`` (0..1 per camera pixel).

        Only the part of a cell inside the image can be lit.
        """
        frac = np.zeros(len(cells.ids))
        for s in stamps:
            frac[s.index] = (s.cell * light[s.rows, s.cols]).sum() / max(s.cell.sum(), 1e-9)
        return frac

    def ground_truth(self, center_um: tuple[float, float], t: float) -> GroundTruth:
        """The cells whose centre is inside the image, with label images."""
        cells = self.cells(center_um, t, margin_px=0)
        stamps = self.stamps(cells, center_um)
        nuclei = np.zeros(self.shape, np.int32)
        whole = np.zeros(self.shape, np.int32)
        for s in stamps:
            whole[s.rows, s.cols][s.cell > 0.5] = s.index + 1
        for s in stamps:
            nuclei[s.rows, s.cols][s.nucleus > 0.5] = s.index + 1
        return GroundTruth(
            ids=cells.ids,
            xy_px=self.to_pixels(cells.xy_um, center_um),
            activity=cells.activity,
            erk_ratio=self.sample.erk_ratio(cells.activity),
            nuclei=nuclei,
            cells=whole,
        )
