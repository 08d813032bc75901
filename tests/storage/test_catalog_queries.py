"""The catalog root is a CatalogOfBlueskyRuns: bluesky's standard lookups work on it."""

from __future__ import annotations

import pytest
from _bluesky_queries import check_standard_queries
from bluesky_tiled_plugins.queries import Key, PartialUID, ScanID, TimeRange
from tiled.client import Context, from_context

from faro_bluesky.storage._embedded import build_app


def test_a_plain_tiled_client_gets_bluesky_lookups(recorded):
    # tiled.client alone, over the same app the embedded catalog and the server use
    with Context.from_app(build_app(recorded.catalog.directory)) as context:
        check_standard_queries(from_context(context), recorded.uid)


def test_catalog_search_takes_standard_queries_and_keeps_its_own_lookup(recorded):
    catalog, uid = recorded.catalog, recorded.uid
    check_standard_queries(catalog.client, uid)
    start = catalog[-1].start
    assert catalog.search(ScanID(start["scan_id"])).uids() == [uid]
    assert catalog.search(PartialUID(uid[:6])).uids() == [uid]
    assert catalog.search(TimeRange(since=start["time"] + 1, timezone="UTC")).uids() == []
    assert catalog.search(Key("stim_mode") == "current", plan="optogenetic_plan").uids() == [uid]
    assert catalog.search(Key("sample") == "other", plan="optogenetic_plan").uids() == []

    # Catalog keeps list positions for ints (catalog[1] is not scan_id 1) ...
    assert catalog[0].uid == catalog[-1].uid == uid
    with pytest.raises(IndexError):
        catalog[start["scan_id"]]
    # ... and membership is by whole uid, although [] accepts a prefix
    assert uid in catalog and catalog[uid[:5]].uid == uid
    assert uid[:8] not in catalog and "zz" not in catalog
    with pytest.raises(KeyError, match=r"no run with uid 'abcd'.*at least 5"):
        catalog["abcd"]  # the plugin's minimum prefix, said in our words
    with pytest.raises(KeyError, match="no run with uid"):
        catalog["f" * 36]
