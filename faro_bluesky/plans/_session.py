"""Session defaults, so that ``RE(optogenetic_plan(fovs, phases))`` works in the shell."""

from __future__ import annotations

from typing import Any

_DEFAULTS: dict[str, Any] = {"microscope": None, "analyzer": None}


def set_session(*, microscope: Any = None, analyzer: Any = None) -> None:
    """Make ``microscope`` / ``analyzer`` the defaults of the experiment plans.

    Arguments left as None keep their current default; pass them again to replace it.
    ``faro-bluesky shell`` calls this with the microscope and analyzer it builds.
    """
    if microscope is not None:
        _DEFAULTS["microscope"] = microscope
    if analyzer is not None:
        _DEFAULTS["analyzer"] = analyzer


def clear_session() -> None:
    """Forget the session's default microscope and analyzer."""
    _DEFAULTS.update(microscope=None, analyzer=None)


def session_microscope() -> Any:
    """The session's default microscope, or None."""
    return _DEFAULTS["microscope"]


def session_analyzer() -> Any:
    """The session's default analyzer, or None."""
    return _DEFAULTS["analyzer"]
