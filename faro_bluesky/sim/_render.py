"""Rendering a field of view of `SimSample` into expected photon counts per channel."""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Stamp:
    """Where one cell lies in the image: its box and its soft nucleus/cell profiles."""

    index: int  # row of the cell in its `Cells`
    rows: slice
    cols: slice
    nucleus: NDArray[np.float64]
    cell: NDArray[np.float64]


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
        """Soft (anti-aliased) nucleus and cell profiles of ``cells`` in this image."""
        h, w = self.shape
        factor = self.sample.params.cell_radius_factor
        out = []
        for index, ((cx, cy), rn, el, ang) in enumerate(
            zip(
                self.to_pixels(cells.xy_um, center_um),
                cells.nucleus_um / self.pixel_size_um,
                cells.elongation,
                cells.angle,
                strict=True,
            )
        ):
            reach = int(np.ceil(rn * factor + 2))
            r0, r1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, h)
            c0, c1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, w)
            if r0 >= r1 or c0 >= c1:
                continue
            dy, dx = np.mgrid[r0:r1, c0:c1].astype(float)
            dx -= cx
            dy -= cy
            u = dx * np.cos(ang) + dy * np.sin(ang)
            v = -dx * np.sin(ang) + dy * np.cos(ang)
            a_n, b_n = rn, rn / el
            nucleus = np.clip((1 - np.hypot(u / a_n, v / b_n)) * b_n + 0.5, 0, 1)
            a_c, b_c = rn * factor, rn * factor / np.sqrt(el)
            cell = np.clip((1 - np.hypot(u / a_c, v / b_c)) * b_c + 0.5, 0, 1)
            out.append(
                Stamp(index, slice(r0, r1), slice(c0, c1), nucleus, np.maximum(cell, nucleus))
            )
        return out

    def render(
        self,
        kind: str,
        cells: Cells,
        stamps: list[Stamp],
        *,
        light: NDArray[np.float64] | None = None,
    ) -> NDArray[np.float64]:
        """Expected counts per ms at light level 100 for channel ``kind``.

        ``light`` is the stimulation light in camera pixels (0..1), used by ``"Cyan"``.
        """
        img = np.zeros(self.shape)
        if kind == "miRFP":
            img += 1.0
            for s in stamps:
                m = cells.marker[s.index]
                img[s.rows, s.cols] += (
                    NUCLEAR_MARKER * m * (s.nucleus + 0.05 * (s.cell - s.nucleus))
                )
        elif kind == "ERKKTR":
            img += 1.0
            ratio = self.sample.erk_ratio(cells.activity)
            for s in stamps:
                r = ratio[s.index]
                nuc = KTR * cells.ktr[s.index] / (1 + r)
                img[s.rows, s.cols] += nuc * s.nucleus + nuc * r * (s.cell - s.nucleus)
        elif kind == "BF":
            img += BRIGHTFIELD
            for s in stamps:
                edge = 4 * s.cell * (1 - s.cell)
                img[s.rows, s.cols] -= BRIGHTFIELD * (0.12 * s.cell + 0.08 * s.nucleus - 0.1 * edge)
        elif kind == "Cyan":
            img += 0.5
            if light is not None:
                img += STIM_REFLECTION * (DMD_BLEED + (1 - DMD_BLEED) * light)
            for s in stamps:
                img[s.rows, s.cols] += 2.0 * s.cell
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
