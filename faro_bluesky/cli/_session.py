"""One wired session: RunEngine, the profile's instruments, catalog, analyzer, feedback.

Shared by ``faro-bluesky shell`` and ``faro-bluesky demo`` so both wire what the
architecture describes: documents go to the catalog (plus a raw log), the status callback
(which drives the progress bars and the widget), the terminal feedback and, through the
plan, the analyzer. The instruments come from a profile (``devices/`` and ``plans/``,
docs/decisions/0042-instrument-profile.md); the RunEngine's metadata persist per catalog
and user, so ``scan_id`` goes on counting across sessions (0045-shell-session.md).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.preprocessors import SupplementalData
from bluesky.utils import PersistentDict
from rich.console import Console

from ..analysis import Analyzer
from ..analysis.components import OtsuSegmenter
from ..callbacks import ProgressDisplay, StatusCallback
from ..devices import Microscope
from ..plans import clear_session, set_session
from ..storage import Catalog
from ._feedback import LiveFeedback
from ._profile import Profile, Setup, find_profile, load_profile

logger = logging.getLogger(__name__)


@dataclass
class Session:
    """The objects a user works with; `close` releases them in reverse order of creation."""

    RE: RunEngine
    scope: Microscope
    catalog: Catalog
    analyzer: Analyzer
    status: StatusCallback
    progress: ProgressDisplay | None
    feedback: LiveFeedback | None
    profile: Profile
    instruments: dict[str, Any]
    """What the profile's ``instruments(setup)`` returned (``scope`` and any others)."""
    plans: dict[str, Any]
    """The profile's plan functions."""
    sd: SupplementalData
    """The RunEngine's baseline preprocessor: ``sd.baseline.append(device)`` adds one."""
    _exit: ExitStack = field(default_factory=ExitStack)

    def namespace(self) -> dict[str, Any]:
        """What the shell puts in the user's namespace; the profile's names win."""
        import bluesky.plan_stubs as bps
        import bluesky.plans as bp
        import numpy as np

        from .. import analysis, plans
        from ..analysis import components

        names: dict[str, Any] = {
            "RE": self.RE,
            "scope": self.scope,
            "catalog": self.catalog,
            "analyzer": self.analyzer,
            "status": self.status,
            "profile": self.profile,
            "sd": self.sd,
            "bp": bp,
            "bps": bps,
            "np": np,
            "components": components,
            "Analyzer": analysis.Analyzer,
        }
        if self.feedback is not None:
            names["bec"] = self.feedback.bec
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
        names.update(self.instruments)
        names.update(self.plans)
        return names

    def close(self) -> None:
        """Stop displays, finish analysis, detach from the RunEngine, release the devices."""
        self._exit.close()


class SessionMetadata(PersistentDict):
    """``RE.md`` kept on disk (bluesky's `PersistentDict`), closed with the session.

    `PersistentDict` writes its whole cache again when it is garbage collected. A session
    closed and then opened again in the same process (tests, a notebook) would have the
    old copy overwrite the new one's ``scan_id`` whenever it is collected, so `close`
    writes once more (nested changes such as ``RE.md["versions"]`` are not synced at
    once) and cancels that final write.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(str(directory))

    def close(self) -> None:
        """Write everything now; nothing later."""
        self.flush()
        self._finalizer.detach()


def default_md_dir(catalog_path: Path) -> Path:
    """Where ``RE.md`` persists: ``<catalog>/md/<user>``.

    One scan-id sequence per user and catalog; zict lets only one process at a time use
    such a directory.
    """
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers)
        user = "user"
    return catalog_path / "md" / (re.sub(r"[^A-Za-z0-9_.-]", "_", user) or "user")


def open_session(
    data: Path,
    *,
    profile: Path | None = None,
    mm_config: Path | None = None,
    seed: int = 0,
    console: Console | None = None,
    progress: bool = True,
    feedback: bool = True,
    during_task: Any = None,
    context_managers: list[Any] | None = None,
    md_dir: Path | None = None,
) -> Session:
    """Build and wire a session whose runs go to the catalog in ``data``.

    :param profile: the profile directory (default: `find_profile`, i.e. ``$FARO_PROFILE``,
        the working directory, the packaged default).
    :param mm_config: a Micro-Manager ``.cfg`` handed to the profile (None: simulation).
    :param feedback: print bluesky's heading/baseline/table per run (`LiveFeedback`).
    :param during_task: the RunEngine's (e.g. a Qt one for napari).
    :param context_managers: the RunEngine's (default bluesky's: Ctrl-C pauses).
    :param md_dir: where ``RE.md`` persists (default `default_md_dir`).
    """
    with ExitStack() as stack:
        catalog = Catalog.local(data)
        stack.callback(catalog.close)
        md = SessionMetadata(md_dir or default_md_dir(catalog.path or Path(data)))
        stack.callback(md.close)
        RE = RunEngine(
            md,
            call_returns_result=True,
            during_task=during_task,
            context_managers=context_managers,
        )
        subscription = catalog.subscribe(RE)
        stack.callback(subscription.unsubscribe)
        os.environ.setdefault("PYMM_SIGNALS_BACKEND", "psygnal")  # never Qt signals on the core
        loaded = load_profile(profile if profile is not None else find_profile())
        setup = Setup(RE=RE, data_dir=catalog.data_dir, mm_config=mm_config, seed=seed)
        stack.callback(_close_all, setup.closers)  # also if instruments() fails half-way
        instruments = loaded.instruments(setup)
        RE.md["instrument"] = setup.instrument or loaded.path.name  # in every start document
        scope = instruments.get("scope")
        if not isinstance(scope, Microscope):
            raise TypeError(
                f"{loaded.path / 'devices'}: instruments(setup) must return the microscope "
                f"as 'scope' (a faro_bluesky.devices.Microscope), got {type(scope).__name__}"
            )
        stack.callback(scope.close)
        sd = _install(RE, setup, stack)
        analyzer = Analyzer(segmenter=OtsuSegmenter(channel=0))
        status = StatusCallback(
            RE=RE, analyzer=analyzer, sources=[scope.camera, subscription.recorder.writer]
        )
        stack.callback(status.close)
        stack.callback(RE.unsubscribe, RE.subscribe(status))
        stack.callback(analyzer.close)  # first: its last results still reach the status
        set_session(microscope=scope, analyzer=analyzer)
        stack.callback(clear_session)
        display = ProgressDisplay(console, status=status) if progress else None
        if display is not None:
            stack.callback(display.close)
        live = LiveFeedback() if feedback else None
        if live is not None:
            stack.callback(RE.unsubscribe, RE.subscribe(live))
        return Session(
            RE=RE,
            scope=scope,
            catalog=catalog,
            analyzer=analyzer,
            status=status,
            progress=display,
            feedback=live,
            profile=loaded,
            instruments=instruments,
            plans=loaded.plan_functions(),
            sd=sd,
            _exit=stack.pop_all(),
        )


def _install(RE: RunEngine, setup: Setup, stack: ExitStack) -> SupplementalData:
    """Put the profile's baseline (stream ``baseline``) and suspenders on the RunEngine."""
    sd = SupplementalData(baseline=setup.baseline)
    RE.preprocessors.append(sd)
    if setup.suspenders:
        stack.callback(RE.clear_suspenders)
    for suspender in setup.suspenders:
        RE.install_suspender(suspender)
    return sd


def _close_all(closers: list[Any]) -> None:
    """Run the profile's clean-ups, newest first; one failing does not skip the others."""
    for close in reversed(closers):
        try:
            close()
        except Exception:
            logger.exception("closing the profile's %r failed", close)
