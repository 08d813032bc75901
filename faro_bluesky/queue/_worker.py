"""The RE Manager worker's namespace: the shell's session, wired the same way.

The RE Manager runs plans in a worker process it forks each time the environment is
opened, and fills that process's namespace from a startup module
(``--startup-module faro_bluesky.queue.worker``). `worker_namespace` builds it with
`open_session`, as ``faro-bluesky shell`` does: the profile's instruments, the catalog
writer and raw log subscribed, the baseline and suspenders installed, the analyzer the
plans use by default; plus, when asked, bluesky's 0MQ publisher for remote status. What
differs, and why:

- no Ctrl-C handling (``context_managers=[]``): the worker runs each plan on its main
  thread, but pauses come from the RE Manager (``re_pause``), and the RE Manager runs in a
  process group of its own under ``faro-bluesky queue``, so a terminal's Ctrl-C never
  reaches the worker half-way;
- no progress bars or tables: the worker's output is captured and forwarded by the
  manager, and ``qserver status``/``faro-bluesky status --follow`` are the views;
- plans are the `queueable` wrappers (JSON arguments, the session's microscope);
- the session is closed when the worker process ends (the environment is closed):
  multiprocessing runs its exit finalizers there, not ``atexit`` handlers.

The RunEngine is made before any device, as ophyd-async needs: `open_session` creates
it first, which sets bluesky's event loop, then the profile connects its devices on it.
Settings come from the environment `faro-bluesky queue` starts the RE Manager with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp

from ..cli._profile import mm_config_from
from ..cli._session import Session, open_session
from ._adapt import extend_experiment, queueable

__all__ = [
    "BLUESKY_PLANS",
    "DATA_ENV",
    "FARO_PLANS",
    "PUBLISH_ENV",
    "SEED_ENV",
    "worker_namespace",
]

logger = logging.getLogger(__name__)

DATA_ENV = "FARO_QUEUE_DATA"
"""Catalog directory of the worker's session (required)."""
PUBLISH_ENV = "FARO_QUEUE_PUBLISH"
"""0MQ proxy input the worker publishes documents to (optional)."""
SEED_ENV = "FARO_QUEUE_SEED"
"""Simulation seed (optional, default 0)."""

FARO_PLANS = ("optogenetic_plan", "calibrate_dmd")
"""faro's plans offered by the queue (wrapped by `queueable`)."""
BLUESKY_PLANS = ("count", "scan", "rel_scan", "list_scan", "grid_scan", "mv", "mvr")
"""bluesky's plans offered by the queue as they are: they work on the profile's devices."""

_EXIT_PRIORITY = 50  # multiprocessing's exit finalizers with a priority run first


def worker_namespace(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Open the session and return the names the RE Manager's worker gets.

    ``RE`` (the RE Manager runs it), the profile's instruments and plans, faro's and
    bluesky's plans, and the session's objects for uploaded scripts (``catalog``,
    ``analyzer``, ``scope``, ``status``, ``sd``, ``session``). Only the profile's
    instruments are devices to the RE Manager; the microscope container is not one.
    """
    from .. import plans as faro_plans
    from ..analysis import components

    env = os.environ if env is None else env
    data = env.get(DATA_ENV)
    if not data:
        raise RuntimeError(
            f"${DATA_ENV} is not set: start the RE Manager with `faro-bluesky queue`, or set "
            "it to the catalog directory (docs/deployment.md, Queue server)"
        )
    session = open_session(
        Path(data),
        mm_config=mm_config_from(None, env),
        seed=int(env.get(SEED_ENV) or 0),
        progress=False,
        feedback=False,
        context_managers=[],
    )
    token = None
    try:
        if env.get(PUBLISH_ENV):
            from ..network import publish

            token = publish(session.RE, env[PUBLISH_ENV])
        Finalize(None, _close, args=(session, token), exitpriority=_EXIT_PRIORITY)
        scope = session.scope
        names: dict[str, Any] = {
            "RE": session.RE,
            "session": session,
            "scope": scope,
            "catalog": session.catalog,
            "analyzer": session.analyzer,
            "status": session.status,
            "sd": session.sd,
            "bp": bp,
            "bps": bps,
            "components": components,
        }
        for name in ("Phase", "Channel", "wait", "parallel"):
            names[name] = getattr(faro_plans, name)
        for name in BLUESKY_PLANS:
            names[name] = getattr(bp, name, None) or getattr(bps, name)
        for name in FARO_PLANS:
            names[name] = queueable(getattr(faro_plans, name), scope)
        for name, plan in session.plans.items():  # the profile's names win, as in the shell
            wrapped = queueable(plan, scope)
            if wrapped is None:
                logger.info("%r from the profile is not a plan: not offered by the queue", name)
            else:
                names[name] = wrapped
        names.update(session.instruments)
        names["scope"] = scope
        names["extend_experiment"] = extend_experiment  # QueueRunHandle.extend
    except BaseException:
        _close(session, token)
        raise
    logger.info("faro-bluesky worker ready: profile %s, catalog %s", session.profile.path, data)
    return names


def _close(session: Session, token: int | None) -> None:
    """Stop publishing, then close the session (analysis, catalog, devices)."""
    try:
        if token is not None:
            from ..network import unpublish

            unpublish(session.RE, token)
    finally:
        session.close()
