"""faro-bluesky: closed-loop optogenetic microscopy on the Bluesky stack.

``import faro_bluesky`` never imports Qt; widgets live in ``faro_bluesky.widgets``.
"""

from importlib.metadata import PackageNotFoundError, version

from .devices import Microscope
from .sim import sim_microscope

try:
    __version__ = version("faro-bluesky")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["Microscope", "__version__", "sim_microscope"]
