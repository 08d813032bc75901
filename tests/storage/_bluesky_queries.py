"""Checks that bluesky's standard catalog lookups work on a plain tiled client of a catalog.

Shared by the embedded-catalog test and the server test: the same assertions must hold
whichever way a user reaches the catalog (decision 0043).
"""

from __future__ import annotations

from typing import Any

from bluesky_tiled_plugins import CatalogOfBlueskyRuns
from bluesky_tiled_plugins.queries import Contains, Eq, Key, PartialUID, ScanID, TimeRange


def check_standard_queries(client: Any, uid: str) -> None:
    """``client`` (from tiled.client alone) holds the one run ``uid`` of the `recorded` fixture."""
    # the root's spec selects bluesky-tiled-plugins' client, in its SQL flavour
    assert isinstance(client, CatalogOfBlueskyRuns)
    assert [(s.name, s.version) for s in client.specs] == [("CatalogOfBlueskyRuns", "3.0")]
    assert client.is_sql

    start = client[-1].start  # newest run
    assert start["uid"] == uid
    assert client[uid[:8]].start["uid"] == uid  # uid prefix
    assert client[uid].start["uid"] == uid
    assert list(client.search(PartialUID(uid[:8]))) == [uid]
    assert len(client.search(PartialUID("ffffffff"))) == 0

    scan_id = start["scan_id"]
    assert client[scan_id].start["uid"] == uid  # a positive int is a scan_id here
    assert list(client.search(ScanID(scan_id))) == [uid]
    assert len(client.search(ScanID(scan_id + 1))) == 0

    t = start["time"]
    assert list(client.search(TimeRange(since=t - 1, until=t + 1, timezone="UTC"))) == [uid]
    assert len(client.search(TimeRange(since=t + 1, timezone="UTC"))) == 0

    # a bare key is a start-document field
    assert list(client.search(Key("plan_name") == "optogenetic_plan")) == [uid]
    assert list(client.search(Key("plan_type") == "generator")) == [uid]
    assert list(client.search(Eq("sample", "HeLa-ERK"))) == [uid]
    assert len(client.search(Key("sample") == "other")) == 0
    assert list(client.search(Contains("motors", start["motors"][0]))) == [uid]
    assert list(client.search(Contains("phase_names", "stim"))) == [uid]
    assert list(client.search(Key("stop.exit_status") == "success")) == [uid]
