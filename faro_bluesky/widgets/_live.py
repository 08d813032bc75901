"""A napari image layer that shows the camera's latest frame while a run goes on.

Frames are announced on the camera's writer thread; napari may only be touched on the GUI
thread, so the newest frame is handed over through a queued Qt signal and older frames that
arrive before the GUI gets to them are simply superseded (the display never slows the
camera).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QObject, Signal

from ..devices import Frame, FrameCache


class LiveImage(QObject):
    """Keeps ``viewer``'s layer ``name`` showing the newest frame of ``frames``."""

    _arrived = Signal()

    def __init__(self, viewer: Any, frames: FrameCache, name: str = "camera") -> None:
        super().__init__()
        self.viewer = viewer
        self.name = name
        self.shown = 0
        self._latest: Frame | None = None
        self._arrived.connect(self._show)  # queued: emitted from the writer thread
        frames.frame_added.connect(self._on_frame)
        self._frames = frames

    def _on_frame(self, frame: Frame) -> None:
        self._latest = frame
        self._arrived.emit()

    def _show(self) -> None:
        frame, self._latest = self._latest, None
        if frame is None:
            return
        channel = frame.metadata.get("channel", "") if frame.metadata else ""
        if self.name in self.viewer.layers:
            layer = self.viewer.layers[self.name]
            layer.data = frame.image
        else:
            layer = self.viewer.add_image(frame.image, name=self.name)
        layer.metadata["channel"] = channel
        self.shown += 1

    def close(self) -> None:
        """Stop following the camera."""
        self._frames.frame_added.disconnect(self._on_frame)
