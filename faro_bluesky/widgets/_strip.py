"""The event strip: one cell per scheduled visit (and wait), past bright, future dimmed.

A widget per cell would be 100 000 widgets; instead the cells are reduced with numpy to
one colour per pixel column (the rarest, most telling kind in a column wins: a wait
(a phase boundary), then stimulation, then reference, then imaging, so a single
stimulated visit or wait never disappears among thousands) and kept as two one-row
images, done and future. Painting draws the future image across the strip and the done
image up to the cursor: a cursor move costs two image blits, whatever the number of
visits. The images are rebuilt only when the layout, the width or the palette changes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from qtpy.QtCore import QEvent, QRect, QRectF, QSize, Qt
from qtpy.QtGui import QBrush, QColor, QImage, QPainter, QPaintEvent, QPalette, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..callbacks import Cell, RunLayout
from ._theme import kind_luts, translucent

__all__ = ["EventStrip", "column_codes"]

# Which kind wins when several share one pixel column (higher wins).
_PRIORITY = np.zeros(4, np.uint8)
_PRIORITY[[Cell.IMAGE, Cell.REF, Cell.STIM, Cell.WAIT]] = [0, 1, 2, 3]
_BY_PRIORITY = np.argsort(_PRIORITY).astype(np.uint8)


def column_codes(cells: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """The kind code shown in each of ``width`` pixel columns for ``cells``.

    With fewer cells than columns a cell spans several columns; with more, a column
    shows the highest-priority kind among its cells.
    """
    n = len(cells)
    if n == 0 or width <= 0:
        return np.zeros(0, np.uint8)
    starts = (np.arange(width, dtype=np.int64) * n) // width
    prio = np.maximum.reduceat(_PRIORITY[cells], starts)
    return _BY_PRIORITY[prio]


def _image(rgba: NDArray[np.uint8]) -> QImage:
    rgba = np.ascontiguousarray(rgba)
    w = rgba.shape[0]
    return QImage(rgba.data, w, 1, 4 * w, QImage.Format.Format_RGBA8888).copy()


class EventStrip(QWidget):
    """A horizontal strip of the run's cells with a cursor on the current one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(18)
        self._layout: RunLayout | None = None
        self._cursor = -1
        self._done: QImage | None = None
        self._future: QImage | None = None
        self._wait_runs: list[tuple[int, int]] = []
        self._built_for: tuple[int, int] | None = None
        self.setToolTip("One cell per visit: imaging, stimulation, reference; grey: wait")

    def sizeHint(self) -> QSize:
        """Full width, a finger tall."""
        return QSize(400, 22)

    # ------------------------------------------------------------------ state
    def set_layout(self, layout: RunLayout | None) -> None:
        """Show the cells of a (new) run; the cursor goes back to the start."""
        self._layout = layout
        self._cursor = -1
        self._built_for = None
        self.update()

    def set_cursor(self, cell: int) -> None:
        """Mark cells up to ``cell`` done and border ``cell`` (-1: none yet)."""
        if cell != self._cursor:
            self._cursor = cell
            self.update()

    @property
    def cursor(self) -> int:
        """The current cell (-1: none yet)."""
        return self._cursor

    @property
    def n_cells(self) -> int:
        """Number of cells shown."""
        return 0 if self._layout is None else len(self._layout.cells)

    def changeEvent(self, event: QEvent) -> None:
        """Rebuild the colours when the theme changes."""
        if event.type() == QEvent.Type.PaletteChange:
            self._built_for = None
        super().changeEvent(event)

    # ---------------------------------------------------------------- drawing
    def _ensure_images(self, width: int) -> None:
        layout = self._layout
        key = (id(layout), width)
        if self._built_for == key or layout is None:
            return
        codes = column_codes(layout.cells, width)
        bright, dim = kind_luts(self.palette())
        self._done = _image(bright[codes])
        self._future = _image(dim[codes])
        wait = np.concatenate([[False], codes == Cell.WAIT, [False]])
        edges = np.flatnonzero(np.diff(wait.astype(np.int8)))
        self._wait_runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
        self._built_for = key

    def cell_span(self, cell: int, width: int | None = None) -> tuple[int, int]:
        """Pixel columns ``[x0, x1)`` (relative to the strip) showing ``cell``."""
        w = self._strip_rect().width() if width is None else width
        n = max(self.n_cells, 1)
        x0 = (cell * w) // n
        x1 = max(x0 + 1, ((cell + 1) * w) // n)
        return x0, x1

    def _strip_rect(self) -> QRect:
        return self.rect().adjusted(1, 2, -1, -2)

    def paintEvent(self, event: QPaintEvent) -> None:
        """Future cells, done cells up to the cursor, wait hatching, cursor border."""
        painter = QPainter(self)
        pal = self.palette()
        r = self._strip_rect()
        if self._layout is None or self.n_cells == 0 or r.width() <= 0:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "(no visits loaded)")
            painter.end()
            return
        self._ensure_images(r.width())
        assert self._done is not None and self._future is not None
        painter.drawImage(QRectF(r), self._future, QRectF(0, 0, r.width(), 1))
        if self._cursor >= 0:
            x1 = self.cell_span(self._cursor, r.width())[1]
            painter.drawImage(QRectF(r.x(), r.y(), x1, r.height()), self._done, QRectF(0, 0, x1, 1))
        hatch = QBrush(translucent(pal.color(QPalette.ColorRole.Dark), 0.8))
        hatch.setStyle(Qt.BrushStyle.BDiagPattern)
        for a, b in self._wait_runs:
            if b - a >= 6:
                painter.fillRect(QRect(r.x() + a, r.y(), b - a, r.height()), hatch)
        if 0 <= self._cursor < self.n_cells:
            x0, x1 = self.cell_span(self._cursor, r.width())
            x0, x1 = min(x0, r.width() - 3), max(x1, x0 + 3)
            pen = QPen(QColor(pal.color(QPalette.ColorRole.WindowText)))
            pen.setWidth(2)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRect(r.x() + x0, r.y() - 1, x1 - x0, r.height() + 1))
        painter.end()
