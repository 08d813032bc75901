"""faro-bluesky: closed-loop optogenetic microscopy on the Bluesky stack.

``import faro_bluesky`` never imports Qt; widgets live in ``faro_bluesky.widgets``.
"""

import logging as _logging

# pymmcore-plus sets the *root* logger to DEBUG when imported, which makes every debug
# call of bluesky and ophyd-async build a log record: ~5 % of the RunEngine's time per
# frame (profiled, docs/decisions/0022-hot-path.md). Import it here once and put the
# root level back; its own logger keeps its handlers and levels.
_root_level = _logging.getLogger().level
import pymmcore_plus  # noqa: E402, F401

_logging.getLogger().setLevel(_root_level)

from ._version import __version__  # noqa: E402
from .devices import Microscope  # noqa: E402
from .sim import sim_microscope  # noqa: E402

__all__ = ["Microscope", "__version__", "sim_microscope"]
