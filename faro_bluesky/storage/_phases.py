"""The phases of a run, chosen at start or while it ran, kept where a search finds them.

A start document lists the phases known when the run opened (``phase_names``); a decision
callable in the experiment picks later phases while it runs, so the start cannot name them
(and a stop document from the RunEngine carries no extra keys). The documents do record
them: every frame's event (and every missed visit's) carries ``visit-phase``. So storage,
which sees every document, keeps the run's phases (``start.phase_names`` first, then each
phase in the order its first frame came) in the run's tiled metadata under
``faro.phase_names`` and updates it the moment a new phase's first frame is written:
``catalog.search(phase=...)`` finds a run by any phase it ran, live or finished, embedded or
behind a server. The list is derived from the documents alone, so a run rebuilt from its raw
log (`Catalog.ingest`, `Catalog.recover`) gets the same one
(docs/decisions/0053-analysis-outputs-in-tiled.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ..schema import VisitField

logger = logging.getLogger(__name__)

NAMESPACE = "faro"
"""Top-level key of faro's own run metadata in tiled (beside bluesky's start and stop)."""
PHASES = "phase_names"
PHASES_KEY = f"{NAMESPACE}.{PHASES}"
"""The tiled metadata key of a run's phases (a list of names), for queries."""


def phases_metadata(phases: list[str]) -> dict[str, Any]:
    """The metadata update that records ``phases``."""
    return {NAMESPACE: {PHASES: list(phases)}}


class RunPhases:
    """Follows runs' documents; says when a run's phase list is new or has grown.

    `feed` returns the run's whole list when it changed (always at the start, so even a
    run that takes no frame is found by its planned phases), else None.
    """

    def __init__(self) -> None:
        self._phases: dict[str, list[str]] = {}
        self._run_of: dict[str, str] = {}  # descriptor uid -> run uid

    def feed(self, name: str, doc: Mapping[str, Any]) -> tuple[str, list[str]] | None:
        """Take one document; ``(run uid, phases)`` if that run's phases changed."""
        if name == "start":
            planned = doc.get("phase_names") or []
            names = [str(p) for p in planned] if isinstance(planned, list) else []
            self._phases[doc["uid"]] = list(dict.fromkeys(names))
            return doc["uid"], list(self._phases[doc["uid"]])
        if name == "descriptor":
            self._run_of[doc["uid"]] = doc["run_start"]
            return None
        if name == "stop":
            uid = doc["run_start"]
            self._phases.pop(uid, None)
            self._run_of = {k: v for k, v in self._run_of.items() if v != uid}
            return None
        if name not in ("event", "event_page"):
            return None
        uid = self._run_of.get(doc["descriptor"])
        value = doc["data"].get(VisitField.PHASE)
        if uid is None or value is None or uid not in self._phases:
            return None
        seen = self._phases[uid]
        values = value if name == "event_page" else [value]
        new = [p for p in dict.fromkeys(_text(v) for v in values) if p and p not in seen]
        if not new:
            return None
        seen.extend(new)
        return uid, list(seen)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_phases(documents: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str] | None:
    """The phase list of the run whose documents these are (None without a start)."""
    follower = RunPhases()
    phases: list[str] | None = None
    for name, doc in documents:
        if name == "stop":
            continue  # (it would forget the run)
        changed = follower.feed(name, doc)
        if changed is not None:
            phases = changed[1]
    return phases


def backfill_phases(client: Any) -> int:
    """Give runs recorded before `RunPhases` existed their ``faro.phase_names``.

    Their start's ``phase_names`` (what a phase search used to match), so a search by phase
    still finds them; how many runs were updated. Costs one query when there are none.
    """
    from tiled.client.container import Container
    from tiled.queries import KeyPresent

    missing = Container.search(client, KeyPresent(PHASES_KEY, False))
    count = 0
    for uid, run in missing.items():
        planned = run.metadata.get("start", {}).get("phase_names") or []
        try:
            run.update_metadata(phases_metadata(list(planned)), drop_revision=True)
        except Exception as exc:  # a read-only server: searches by phase miss this run
            logger.warning("could not record the phases of run %s: %s", uid, exc)
            return count
        count += 1
    return count
