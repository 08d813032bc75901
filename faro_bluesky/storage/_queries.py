"""`Catalog.search`'s keywords as tiled queries, and applying them to a catalog client.

Start-document fields are queried as ``start.<field>``. A run's phases are not all in its
start document (decisions choose some while it runs), so ``phase=`` queries the list storage
keeps in the run's metadata (``faro.phase_names``, `_phases`). bluesky-tiled-plugins'
``CatalogOfBlueskyRuns.search`` reads every key outside ``start.``/``stop.`` as a start
field, so faro's own keys go through tiled's plain ``Container.search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._phases import NAMESPACE, PHASES_KEY


def _epoch(value: float | str | datetime, field_name: str) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{field_name}={value!r} is not a time: pass an ISO date like "
                "'2026-11-24' or '2026-11-24T08:30', a datetime, or epoch seconds"
            ) from None
    if isinstance(value, datetime):
        return value.timestamp()
    raise ValueError(f"{field_name}={value!r} must be an ISO string, a datetime or a number")


def criteria(
    queries: Sequence[Any],
    *,
    plan: str | None = None,
    phase: str | None = None,
    sample: str | None = None,
    instrument: str | None = None,
    since: float | str | datetime | None = None,
    until: float | str | datetime | None = None,
    start_fields: dict[str, Any] | None = None,
) -> list[Any]:
    """The tiled queries of `Catalog.search`'s arguments (see there)."""
    from tiled.queries import Comparison, Contains, Eq

    out = list(queries)
    if plan is not None:
        out.append(Eq("start.plan_name", plan))
    if phase is not None:
        out.append(Contains(PHASES_KEY, phase))
    if sample is not None:
        out.append(Eq("start.sample", sample))
    if instrument is not None:
        out.append(Eq("start.instrument", instrument))
    if since is not None:
        out.append(Comparison("ge", "start.time", _epoch(since, "since")))
    if until is not None:
        out.append(Comparison("lt", "start.time", _epoch(until, "until")))
    out += [Eq(f"start.{k}", v) for k, v in (start_fields or {}).items()]
    return out


def apply(client: Any, queries: Sequence[Any]) -> Any:
    """``client`` narrowed by every query (faro's metadata keys passed through as they are)."""
    from tiled.client.container import Container

    for query in queries:
        key = getattr(query, "key", "")
        if isinstance(key, str) and key.startswith(f"{NAMESPACE}."):
            client = Container.search(client, query)
        else:
            client = client.search(query)
    return client
