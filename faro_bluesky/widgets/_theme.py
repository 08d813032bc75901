"""Colours of the status widget: kind hues are fixed, everything else follows the palette.

Imaging, stimulation and reference need hues that mean the same on a light and a dark
theme (the legend ties them to the strip), so they are fixed mid-lightness colours; text,
panels, wait cells, dimming and borders come from the widget's `QPalette`, which napari's
light/dark themes (and a system dark mode) set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from qtpy.QtGui import QColor, QPalette

from ..callbacks import KINDS

KIND_HUES = {"image": "#3d8fd6", "stim": "#f08c00", "ref": "#9c6ade"}
LAG_RED = "#e5484d"
"""Lag above the limit and errors (readable on light and dark backgrounds)."""
DIM_ALPHA = 0.32
"""How much of a future cell's colour shows through the background."""


def kind_color(kind: str, palette: QPalette) -> QColor:
    """The colour of a cell/legend chip of ``kind`` (wait: the palette's mid grey)."""
    if kind in KIND_HUES:
        return QColor(KIND_HUES[kind])
    return QColor(palette.color(QPalette.ColorRole.Mid))


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` blended towards ``b`` by ``t`` (0: a, 1: b), opaque."""
    return QColor(
        round(a.red() + (b.red() - a.red()) * t),
        round(a.green() + (b.green() - a.green()) * t),
        round(a.blue() + (b.blue() - a.blue()) * t),
    )


def translucent(c: QColor, alpha: float) -> QColor:
    """``c`` with opacity ``alpha`` (0..1)."""
    out = QColor(c)
    out.setAlphaF(alpha)
    return out


def kind_luts(palette: QPalette) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """RGBA lookup tables (one row per `KINDS` code): done cells, and future (dimmed)."""
    base = palette.color(QPalette.ColorRole.Base)
    bright = np.zeros((len(KINDS), 4), np.uint8)
    dim = np.zeros_like(bright)
    for i, kind in enumerate(KINDS):
        c = kind_color(kind, palette)
        d = mix(base, c, DIM_ALPHA)
        bright[i] = (c.red(), c.green(), c.blue(), 255)
        dim[i] = (d.red(), d.green(), d.blue(), 255)
    return bright, dim
