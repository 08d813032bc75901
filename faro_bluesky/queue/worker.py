"""Startup module of the RE Manager's worker: ``--startup-module faro_bluesky.queue.worker``.

The RE Manager imports it each time the environment is opened (in a new worker process)
and copies its globals into the worker's namespace, so this module defines nothing but
what `worker_namespace` returns: the session of the profile named by ``$FARO_PROFILE``,
writing to the catalog in ``$FARO_QUEUE_DATA`` (docs/decisions/0052-queue-server.md).
"""

from faro_bluesky.queue._worker import worker_namespace as _worker_namespace

globals().update(_worker_namespace())
