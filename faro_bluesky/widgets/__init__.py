"""Qt widgets for a running experiment (imports Qt through qtpy: import it explicitly).

``import faro_bluesky`` never imports Qt; ``import faro_bluesky.widgets`` does. napari is
never imported here: `add_to_napari` works through the viewer it is given.

- `ExperimentStatusWidget` — state, event strip, FOV map, stats and Pause/Resume/Stop.
- `QtDuringTask` — ``RunEngine(during_task=QtDuringTask())`` keeps Qt alive in ``RE(...)``.
- `add_to_napari` — dock the widget in a napari viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._control import RunControl
    from ._during import QtDuringTask
    from ._napari import add_to_napari
    from ._status_widget import ExperimentStatusWidget

__all__ = ["ExperimentStatusWidget", "QtDuringTask", "RunControl", "add_to_napari"]

_WHERE = {
    "ExperimentStatusWidget": "._status_widget",
    "QtDuringTask": "._during",
    "RunControl": "._control",
    "add_to_napari": "._napari",
}


def __getattr__(name: str) -> Any:
    """Import each piece on first use (the napari helper need not load the widget set)."""
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
