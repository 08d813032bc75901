"""faro-bluesky: closed-loop optogenetic microscopy on the Bluesky stack.

``import faro_bluesky`` never imports Qt; widgets live in ``faro_bluesky.widgets``.
"""

from ._version import __version__
from .devices import Microscope
from .sim import sim_microscope

__all__ = ["Microscope", "__version__", "sim_microscope"]
