"""One wired session: RunEngine, microscope, catalog, analyzer, status and progress.

Shared by ``faro-bluesky shell`` and ``faro-bluesky demo`` so both wire exactly what the
architecture describes: documents go to the catalog (plus a raw log), the status callback
(which drives the progress display and the widget) and, through the plan, the analyzer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from rich.console import Console

from ..analysis import Analyzer
from ..analysis.components import OtsuSegmenter
from ..callbacks import ProgressDisplay, StatusCallback
from ..devices import Microscope
from ..plans import clear_session, set_session
from ..storage import Catalog


@dataclass
class Session:
    """The objects a user works with; `close` releases them in order."""

    RE: RunEngine
    scope: Microscope
    catalog: Catalog
    analyzer: Analyzer
    status: StatusCallback
    progress: ProgressDisplay | None
    _subscriptions: list[Any] = field(default_factory=list)

    def namespace(self) -> dict[str, Any]:
        """What the shell puts in the user's namespace."""
        import bluesky.plan_stubs as bps
        import bluesky.plans as bp
        import numpy as np

        from .. import analysis, plans
        from ..analysis import components

        names = {
            "RE": self.RE,
            "scope": self.scope,
            "catalog": self.catalog,
            "analyzer": self.analyzer,
            "status": self.status,
            "bp": bp,
            "bps": bps,
            "np": np,
            "components": components,
            "Analyzer": analysis.Analyzer,
        }
        for name in (
            "Phase",
            "Channel",
            "wait",
            "parallel",
            "schedule",
            "optogenetic_plan",
            "calibrate_dmd",
        ):
            names[name] = getattr(plans, name)
        return names

    def close(self) -> None:
        """Stop displays, finish analysis, detach from the RunEngine, release the core."""
        if self.progress is not None:
            self.progress.close()
        self.analyzer.close()
        for sub in self._subscriptions:
            sub.unsubscribe()
        self.status.close()
        clear_session()
        self.scope.close()
        self.catalog.close()


def load_microscope(config: Path | None, data_dir: Path, seed: int) -> Microscope:
    """The simulated microscope, or real hardware from a Micro-Manager config file."""
    if config is None:
        from ..sim import sim_microscope

        return sim_microscope(seed, data_dir=data_dir, time_scale=10.0)
    if not config.is_file():
        raise ValueError(f"--config {config}: no such Micro-Manager configuration file")
    from pymmcore_plus import CMMCorePlus

    core = CMMCorePlus()
    core.loadSystemConfiguration(str(config))
    return Microscope.from_core(core, data_dir=data_dir)


def open_session(
    data: Path,
    *,
    config: Path | None = None,
    seed: int = 0,
    console: Console | None = None,
    progress: bool = True,
    RE: RunEngine | None = None,
) -> Session:
    """Build and wire a session whose runs go to the catalog in ``data``."""
    if RE is None:
        RE = RunEngine(call_returns_result=True)  # default context managers: Ctrl-C pauses
    catalog = Catalog.local(data)
    subscription = catalog.subscribe(RE)
    os.environ.setdefault("PYMM_SIGNALS_BACKEND", "psygnal")  # never Qt signals on the core
    try:
        scope = load_microscope(config, catalog.data_dir, seed)
    except Exception:
        subscription.unsubscribe()
        catalog.close()
        raise
    analyzer = Analyzer(segmenter=OtsuSegmenter(channel=0))
    status = StatusCallback(
        RE=RE, analyzer=analyzer, sources=[scope.camera, subscription.recorder.writer]
    )
    token = RE.subscribe(status)
    display = ProgressDisplay(console, status=status) if progress else None
    set_session(microscope=scope, analyzer=analyzer)
    session = Session(RE, scope, catalog, analyzer, status, display)
    session._subscriptions += [subscription, _Token(RE, token)]
    return session


@dataclass
class _Token:
    RE: RunEngine
    token: int

    def unsubscribe(self) -> None:
        self.RE.unsubscribe(self.token)
