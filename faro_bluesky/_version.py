"""Package version, from the installed distribution's metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("faro-bluesky")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"


def version_string() -> str:
    """``faro-bluesky X.Y.Z``."""
    return f"faro-bluesky {__version__}"
