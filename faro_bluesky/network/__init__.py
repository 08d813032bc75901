"""Documents over the network: publish a run, follow it elsewhere, analyse it elsewhere.

- `publish` sends a RunEngine's documents to a 0MQ proxy (bluesky's ``Publisher``;
  start the proxy with ``bluesky-0MQ-proxy`` or `ProxyProcess`).
- `follow` feeds the proxy's stream to callbacks in another process or machine
  (bluesky's ``RemoteDispatcher`` on a thread): a `StatusCallback` for
  ``faro-bluesky status --follow`` or the napari widget.
- `AnalyzerService` runs the closed-loop `Analyzer` on that stream in its own process
  and sends each mask back; `RemoteMasks` is the plan's mask provider on the acquisition
  side (``optogenetic_plan(..., analyzer=RemoteMasks(address, camera=scope.camera))``).

Documents are msgpack, never pickle (`pack`/`unpack`): docs/decisions/0048.
"""

from ._follow import Follower, follow
from ._masks import RemoteMasks
from ._publish import ProxyProcess, publish, unpublish
from ._service import AnalyzerService
from ._wire import pack, unpack

__all__ = [
    "AnalyzerService",
    "Follower",
    "ProxyProcess",
    "RemoteMasks",
    "follow",
    "pack",
    "publish",
    "unpack",
    "unpublish",
]
