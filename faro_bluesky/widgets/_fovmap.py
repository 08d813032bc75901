"""The FOV map: stage positions, the order they are visited, the FOV being imaged now."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._theme import kind_color, translucent

__all__ = ["FovMap"]


class FovMap(QWidget):
    """One dot per FOV at its stage position (equal aspect), the visit path in grey.

    The current FOV is drawn larger, in the colour of what it is doing (imaging,
    stimulation, reference). Stage y grows downwards, as on the camera image.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 90)
        self._fovs: tuple[tuple[float, float], ...] = ()
        self._path: tuple[int, ...] = ()
        self._current: int | None = None
        self._kind = "image"

    def sizeHint(self) -> QSize:
        """A small square-ish panel."""
        return QSize(240, 160)

    def set_fovs(self, fovs: Sequence[Sequence[float]], path: Sequence[int] = ()) -> None:
        """Positions (µm) and the order in which FOVs are first visited."""
        self._fovs = tuple((float(x), float(y)) for x, y in fovs)
        self._path = tuple(int(p) for p in path if 0 <= p < len(self._fovs))
        self._current = None
        self.update()

    def set_current(self, p: int | None, kind: str = "image") -> None:
        """Highlight FOV ``p`` (None: none) as doing ``kind``."""
        if (p, kind) != (self._current, self._kind):
            self._current, self._kind = p, kind
            self.update()

    @property
    def current(self) -> int | None:
        """The highlighted FOV index."""
        return self._current

    def positions(self) -> list[QPointF]:
        """Widget coordinates of every FOV dot (equal aspect, centred, with margins)."""
        if not self._fovs:
            return []
        margin = 16.0
        r = QRectF(self.rect()).adjusted(margin, margin + 10, -margin, -margin)
        xs = [x for x, _ in self._fovs]
        ys = [y for _, y in self._fovs]
        span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9)
        scale = min(r.width(), r.height()) / span
        cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
        if max(xs) == min(xs) and max(ys) == min(ys):
            scale = 0.0  # a single position: centre it
        return [
            QPointF(r.center().x() + (x - cx) * scale, r.center().y() + (y - cy) * scale)
            for x, y in self._fovs
        ]

    def paintEvent(self, event: QPaintEvent) -> None:
        """Panel, path, dots, current dot, counter."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = QColor(pal.color(QPalette.ColorRole.WindowText))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(pal.color(QPalette.ColorRole.AlternateBase))
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        pts = self.positions()
        if not pts:
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "(no FOVs)")
            painter.end()
            return
        n = len(pts)
        if len(self._path) > 1:
            pen = QPen(pal.color(QPalette.ColorRole.Mid))
            pen.setWidthF(1.5)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPolyline(QPolygonF([pts[i] for i in self._path]))
        radius = max(2.0, min(6.0, 120.0 / (n**0.5 + 1)))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(translucent(text, 0.55))
        for pt in pts:
            painter.drawEllipse(pt, radius, radius)
        cur = self._current
        if cur is not None and 0 <= cur < n:
            painter.setBrush(kind_color(self._kind, pal))
            pen = QPen(text)
            pen.setWidthF(1.5)
            painter.setPen(pen)
            painter.drawEllipse(pts[cur], radius * 1.8, radius * 1.8)
        painter.setPen(text)
        label = f"FOV {cur + 1}/{n}" if cur is not None and 0 <= cur < n else f"{n} FOV(s)"
        painter.drawText(
            QRectF(self.rect()).adjusted(8, 4, -8, -4),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
            label,
        )
        painter.end()
