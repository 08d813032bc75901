"""Dock the status widget in a napari viewer (napari is only touched through the viewer)."""

from __future__ import annotations

from typing import Any

from ..callbacks import StatusCallback
from ._status_widget import ExperimentStatusWidget

__all__ = ["add_to_napari"]


def add_to_napari(
    viewer: Any,
    status: StatusCallback,
    RE: Any = None,
    *,
    area: str = "right",
    name: str = "Experiment",
    **kwargs: Any,
) -> Any:
    """Add an `ExperimentStatusWidget` to ``viewer`` as a dock widget; return the dock.

    The widget is ``dock.widget()``. For the buttons to work with a RunEngine called from
    napari's console or IPython on the main thread, create it with
    ``RunEngine(during_task=QtDuringTask())`` so napari keeps drawing while it runs.
    """
    widget = ExperimentStatusWidget(status, RE, **kwargs)
    return viewer.window.add_dock_widget(widget, name=name, area=area)
