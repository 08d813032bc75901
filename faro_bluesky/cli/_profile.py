"""Instrument profiles: the ``devices/`` and ``plans/`` a session loads, beamline style.

A profile is a directory holding two Python packages that users edit: ``devices/``
defines ``instruments(setup)``, which builds the instruments and declares which are read
as baseline, watched by suspenders or labelled for the IPython magics; ``plans/`` holds
plain plan functions. ``faro-bluesky shell`` (and the demo) load one, so the setup of a
microscope lives in files next to the data, not in the package.

The packages are imported by path under a private parent package
(``_faro_profile_<n>``), never as top-level ``devices``/``plans``: those names would
shadow, or be shadowed by, anything installed under them, and a process can load two
profiles (the tests do). Inside a profile, ``plans`` reaches ``devices`` relatively
(``from ..devices import ...``). Where the profile comes from is decided by
`find_profile` (docs/decisions/0042-instrument-profile.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bluesky import RunEngine

PROFILE_ENV = "FARO_PROFILE"
"""Environment variable naming a profile directory (after ``--profile``)."""
MM_CONFIG_ENV = "FARO_MM_CONFIG"
"""Environment variable naming a Micro-Manager ``.cfg`` (after ``--config``)."""

_counter = itertools.count()


def is_profile(path: Path) -> bool:
    """Whether ``path`` holds both ``devices/__init__.py`` and ``plans/__init__.py``."""
    return (path / "devices" / "__init__.py").is_file() and (
        path / "plans" / "__init__.py"
    ).is_file()


def default_profile() -> Path:
    """The profile shipped with faro-bluesky: the simulated microscope and example plans.

    A wheel carries it as ``faro_bluesky/_profile`` (hatch ``force-include`` of the
    repository's ``devices/`` and ``plans/``); a source checkout or editable install
    uses the repository's top level itself.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_profile", package.parent):
        if is_profile(candidate):
            return candidate
    raise FileNotFoundError(
        f"no default profile: neither {package / '_profile'} nor {package.parent} holds "
        "devices/ and plans/; reinstall faro-bluesky, or pass --profile PATH"
    )


def find_profile(
    flag: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The profile to load; the first of these that is given wins.

    ``--profile`` > ``$FARO_PROFILE`` > the working directory (if it holds ``devices/``
    and ``plans/``) > the packaged default.

    An explicitly named profile that is not one raises ``ValueError`` rather than
    silently falling back to the simulation.
    """
    env = os.environ if env is None else env
    named = [(flag, "--profile"), (env.get(PROFILE_ENV) or None, f"${PROFILE_ENV}")]
    for value, source in named:
        if value is not None:
            path = Path(value).expanduser().resolve()
            if not is_profile(path):
                raise ValueError(
                    f"{source}={value}: not a profile (needs devices/__init__.py and "
                    "plans/__init__.py); see docs/decisions/0042-instrument-profile.md"
                )
            return path
    here = (cwd or Path.cwd()).resolve()
    return here if is_profile(here) else default_profile()


def mm_config_from(flag: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """The Micro-Manager configuration to load, or None for the simulation.

    ``--config`` > ``$FARO_MM_CONFIG``; a named file that does not exist raises
    ``ValueError``.
    """
    env = os.environ if env is None else env
    for value, source in ((flag, "--config"), (env.get(MM_CONFIG_ENV) or None, MM_CONFIG_ENV)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ValueError(f"{source}={value}: no such Micro-Manager configuration file")
            return path
    return None


def add_labels(device: Any, *labels: str) -> None:
    """Give ``device`` bluesky labels; ``%wa``/``%ct`` find devices by them.

    ophyd v1 devices take ``labels=`` when built; ophyd-async devices have no such
    argument, so this sets the attribute `bluesky.magics` reads (``_ophyd_labels_``).
    """
    device._ophyd_labels_ = set(getattr(device, "_ophyd_labels_", ())) | set(labels)


@dataclass
class Setup:
    """What a profile's ``instruments(setup)`` is given, and what it declares back.

    ``instruments`` builds its devices with ``setup.data_dir`` (where cameras write),
    ``setup.mm_config`` (a Micro-Manager ``.cfg``, or None for the simulation) and
    ``setup.seed``; appends to ``baseline`` (read at the start and end of every run, stream
    ``baseline``) and ``suspenders`` (installed on the RunEngine); labels devices for
    ``%wa``/``%ct``; and registers clean-up with `on_close`.
    """

    RE: RunEngine
    data_dir: Path
    mm_config: Path | None = None
    seed: int = 0
    instrument: str = ""
    """This microscope's name, put in every start document as ``instrument`` (several
    microscopes can share one catalog: ``catalog.search(instrument=...)``); default the
    profile directory's name."""
    baseline: list[Any] = field(default_factory=list)
    suspenders: list[Any] = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)

    def label(self, label: str, *devices: Any) -> None:
        """Add ``label`` (e.g. ``"motors"``, ``"detectors"``) to each device, for the magics."""
        for device in devices:
            add_labels(device, label)

    def on_close(self, close: Callable[[], object]) -> None:
        """Call ``close`` when the session ends (in reverse order of registration)."""
        self.closers.append(close)


@dataclass(frozen=True)
class Profile:
    """A loaded profile: its directory and its imported ``devices`` and ``plans`` packages."""

    path: Path
    devices: ModuleType
    plans: ModuleType

    def instruments(self, setup: Setup) -> dict[str, Any]:
        """Build the instruments: the name → object mapping from ``devices.instruments``."""
        build = getattr(self.devices, "instruments", None)
        if not callable(build):
            raise TypeError(
                f"{self.path / 'devices'} must define instruments(setup) -> dict of name: device"
            )
        built = build(setup)
        if not isinstance(built, Mapping) or not all(isinstance(k, str) for k in built):
            raise TypeError(
                f"{self.path / 'devices'}: instruments(setup) returned {type(built).__name__}, "
                "expected a dict of name: device"
            )
        return dict(built)

    def plan_functions(self) -> dict[str, Callable[..., Any]]:
        """The plans to put in the namespace.

        ``plans.__all__``, or else every public function defined inside the profile's
        ``plans`` (not the ones it imports).
        """
        module = self.plans
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                name
                for name, obj in vars(module).items()
                if not name.startswith("_")
                and callable(obj)
                and getattr(obj, "__module__", "").startswith(module.__name__)
            ]
        return {name: getattr(module, name) for name in names}


def load_profile(path: Path) -> Profile:
    """Import ``path/devices`` and ``path/plans`` under a fresh private parent package."""
    path = Path(path).resolve()
    if not is_profile(path):
        raise ValueError(f"{path}: not a profile (needs devices/__init__.py and plans/__init__.py)")
    parent = f"_faro_profile_{next(_counter)}"
    spec = importlib.util.spec_from_loader(parent, loader=None, is_package=True)
    if spec is None:  # pragma: no cover - only without a name
        raise ImportError(f"cannot make a package spec for {path}")
    package = importlib.util.module_from_spec(spec)
    package.__path__ = [str(path)]
    package.__file__ = None
    sys.modules[parent] = package
    try:
        devices = importlib.import_module(f"{parent}.devices")
        plans = importlib.import_module(f"{parent}.plans")
    except Exception:
        for name in [m for m in sys.modules if m == parent or m.startswith(parent + ".")]:
            del sys.modules[name]
        raise
    return Profile(path=path, devices=devices, plans=plans)
