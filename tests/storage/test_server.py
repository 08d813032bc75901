"""``faro-bluesky serve`` over the catalog directory: the key opens it, nothing else does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import zarr

from faro_bluesky.cli import main
from faro_bluesky.storage import Catalog

KEY = "faroTestKey42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(recorded):
    port = _free_port()
    script = Path(sys.executable).parent / "faro-bluesky"
    proc = subprocess.Popen(
        [str(script), "serve", str(recorded.catalog.path), "--port", str(port)],
        env={**os.environ, "TILED_SINGLE_USER_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)  # polling the server for readiness, with a deadline
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


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
