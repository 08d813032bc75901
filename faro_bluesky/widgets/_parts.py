"""Small painted pieces of the status widget: chips and queue bars (palette colours)."""

from __future__ import annotations

from qtpy.QtCore import QRectF, QSize, Qt
from qtpy.QtGui import QColor, QFont, QFontMetrics, QPainter, QPaintEvent, QPalette
from qtpy.QtWidgets import QSizePolicy, QWidget

from ._theme import LAG_RED, kind_color, translucent

__all__ = ["Chip", "QueueBar"]


class Chip(QWidget):
    """Rounded, translucent label; with ``kind`` a colour swatch and an active/dim look."""

    def __init__(self, text: str = "", kind: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._text = text
        self.kind = kind
        self._active = True
        self._bold = kind is None
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)

    def text(self) -> str:
        """The chip's text."""
        return self._text

    def setText(self, text: str) -> None:
        """Change the text (resizes the chip)."""
        if text != self._text:
            self._text = text
            self.updateGeometry()
            parent = self.parentWidget()
            if parent is not None and parent.layout() is not None:
                parent.layout().activate()  # resize now, not at the next event-loop turn
            self.update()

    @property
    def active(self) -> bool:
        """Whether the chip is shown opaque (the current kind, for a legend chip)."""
        return self._active

    def set_active(self, active: bool) -> None:
        """Opaque when active, dimmed otherwise."""
        if active != self._active:
            self._active = active
            self.update()

    def _font(self) -> QFont:
        font = self.font()
        font.setBold(self._bold)
        return font

    def sizeHint(self) -> QSize:
        """Text plus padding (and swatch)."""
        fm = QFontMetrics(self._font())
        swatch = 14 if self.kind else 0
        return QSize(fm.horizontalAdvance(self._text) + 16 + swatch, fm.height() + 8)

    def paintEvent(self, event: QPaintEvent) -> None:
        """Background pill, swatch, text."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        text = QColor(pal.color(QPalette.ColorRole.WindowText))
        opacity = 1.0 if self._active else 0.4
        painter.setOpacity(opacity)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(translucent(text, 0.12))
        painter.drawRoundedRect(r, r.height() / 2, r.height() / 2)
        x = 8.0
        if self.kind:
            painter.setBrush(kind_color(self.kind, pal))
            painter.drawRoundedRect(QRectF(x, r.center().y() - 5, 10, 10), 3, 3)
            x += 14
        painter.setPen(text)
        painter.setFont(self._font())
        painter.drawText(r.adjusted(x, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, self._text)
        painter.end()


class QueueBar(QWidget):
    """A queue's depth as a grey fill, red above 80 % of its capacity."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.depth = 0
        self.capacity: int | None = None
        self.setMinimumSize(60, 10)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        """Thin bar."""
        return QSize(100, 12)

    def set_value(self, depth: int, capacity: int | None) -> None:
        """Show ``depth`` of ``capacity`` (unknown capacity: scale to 10 or the depth)."""
        if (depth, capacity) != (self.depth, self.capacity):
            self.depth, self.capacity = depth, capacity
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Track and fill."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        r = QRectF(self.rect()).adjusted(0.5, 1.5, -0.5, -1.5)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(translucent(pal.color(QPalette.ColorRole.WindowText), 0.1))
        painter.drawRoundedRect(r, 3, 3)
        cap = self.capacity or max(10, self.depth)
        frac = min(1.0, self.depth / cap) if cap else 0.0
        full = self.capacity is not None and frac > 0.8
        painter.setBrush(QColor(LAG_RED) if full else pal.color(QPalette.ColorRole.Mid))
        if frac > 0:
            painter.drawRoundedRect(QRectF(r.x(), r.y(), r.width() * frac, r.height()), 3, 3)
        painter.end()
