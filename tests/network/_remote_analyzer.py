"""The analyzer the remote-analyzer tests serve (``faro-bluesky analyzer --analyzer``)."""

from faro_bluesky.analysis import Analyzer
from faro_bluesky.analysis.components import CenterCircle, OtsuSegmenter


def make() -> Analyzer:
    """A mask whose pixels are known beforehand, so the test can check what arrived."""
    return Analyzer(
        segmenter=OtsuSegmenter(channel="miRFP"), stimulator=CenterCircle(), mask_timeout=30
    )
