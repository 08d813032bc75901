"""``faro-bluesky serve`` over the catalog directory: the key opens it, nothing else does."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import zarr
from _bluesky_queries import check_standard_queries
from _server import KEY, serving
from tiled.client import from_uri

from faro_bluesky.cli import main
from faro_bluesky.storage import Catalog


@pytest.fixture(scope="module")  # one server process for this module's tests
def server(recorded):
    with serving(recorded.catalog.path) as url:
        yield url


def test_server_serves_the_run_with_the_key_and_refuses_without(server, recorded, capsys):
    url = server
    remote = Catalog.from_uri(url, api_key=KEY)
    run = remote[recorded.uid]
    local = recorded.catalog[recorded.uid]
    assert run.start == local.start and run.stop == local.stop
    assert run.frames.equals(local.frames)
    on_disk = zarr.open_array(local.store_path / "camera", mode="r")[:]
    np.testing.assert_array_equal(run.raw(via="tiled").compute(), on_disk)
    assert run.log_path is None  # no raw logs on the client's side: tiled's documents
    assert [n for n, _ in run.documents()] == [n for n, _ in recorded.live]
    assert remote.search(phase="stim").uids() == [recorded.uid]
    assert main(["runs", url, "--api-key", KEY]) == 0
    assert recorded.uid[:8] in capsys.readouterr().out

    with pytest.raises(PermissionError, match="api_key"):
        Catalog.from_uri(url)
    with pytest.raises(PermissionError, match="api_key"):
        Catalog.from_uri(url, api_key="wrongKey")
    metadata = f"{url}/api/v1/metadata/{recorded.uid}"
    assert httpx.get(metadata).status_code == 401
    assert httpx.get(metadata, headers={"Authorization": "Apikey wrong"}).status_code == 401
    assert httpx.get(metadata, headers={"Authorization": f"Apikey {KEY}"}).status_code == 200


def test_a_plain_tiled_client_of_the_server_gets_bluesky_lookups(server, recorded):
    # what a colleague does with tiled alone: the root's spec picks CatalogOfBlueskyRuns
    check_standard_queries(from_uri(server, api_key=KEY), recorded.uid)
