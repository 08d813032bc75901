"""``faro-bluesky serve`` and ``faro-bluesky runs``: the catalog from the command line.

``serve PATH`` puts a tiled server in front of a catalog directory (the one
``Catalog.local(PATH)`` uses), API key required, on 127.0.0.1 unless told otherwise;
clients use ``Catalog.from_uri(url, api_key=...)``. ``runs [PATH]`` lists a catalog's
runs (a directory, or a server URL with ``--api-key``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

DEFAULT_PATH = Path("faro-data")
API_KEY_ENV = "TILED_SINGLE_USER_API_KEY"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``serve``."""
    parser.add_argument("path", type=Path, help="catalog directory (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"the key clients must send (default ${API_KEY_ENV}, else a random one, printed)",
    )
    parser.add_argument(
        "--readable",
        type=Path,
        action="append",
        default=[],
        help="another directory the server may serve files from (repeatable)",
    )


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``runs``."""
    parser.add_argument(
        "path",
        nargs="?",
        default=str(DEFAULT_PATH),
        help="catalog directory or server URL (default ./faro-data)",
    )
    parser.add_argument("--api-key", default=None, help="API key, for a server URL")
    parser.add_argument("--limit", type=int, default=50, help="show the newest N runs")


def _api_key(given: str | None) -> tuple[str, bool]:
    """The server's key and whether it was generated here."""
    key = given if given is not None else os.environ.get(API_KEY_ENV)
    if key is None:
        return secrets.token_hex(32), True
    if not key.isalnum():
        raise ValueError(
            "--api-key must be letters and digits only (it travels in URLs); "
            'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key, False


def serve(args: argparse.Namespace, console: Console) -> int:
    """Run a tiled server over the catalog directory until interrupted."""
    import uvicorn

    from ..storage import CatalogDirectory, build_app

    try:
        key, generated = _api_key(args.api_key)
        directory = CatalogDirectory.at(args.path, args.readable)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        return 2
    app = build_app(directory, api_key=key)
    url = f"http://{args.host}:{args.port}"
    console.print(f"Serving the catalog in {directory.root}", soft_wrap=True)
    console.print(f"  URL:     {url}", soft_wrap=True)
    if generated:
        console.print(
            f"  API key: {key}  (generated; set --api-key or ${API_KEY_ENV} to fix it)",
            soft_wrap=True,
        )
    else:
        console.print("  API key: as given", soft_wrap=True)
    console.print(f"  Python:  Catalog.from_uri({url!r}, api_key=...)", soft_wrap=True)
    console.print(
        f"  Cameras must write to {directory.data_dir} for the server to serve frames.",
        soft_wrap=True,
    )
    if not _is_loopback(args.host):
        console.print(
            "[yellow]warning:[/yellow] listening beyond this machine without TLS: the API "
            "key travels in clear text; put a TLS proxy in front for untrusted networks"
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open(path: str, api_key: str | None) -> Any:
    from ..storage import Catalog

    if path.startswith(("http://", "https://")):
        return Catalog.from_uri(path, api_key=api_key)
    if not Path(path).is_dir():
        raise ValueError(f"path={path!r} is not a catalog directory (faro-bluesky runs PATH)")
    return Catalog.local(path)


def _row(run: Any) -> list[str]:
    start = run.start
    when = datetime.datetime.fromtimestamp(start["time"]).strftime("%Y-%m-%d %H:%M:%S")
    stop = run.stop
    if stop is not None:
        frames = str(stop.get("num_events", {}).get(run.stream, 0))
        status = stop.get("exit_status", "?")
    else:
        try:
            frames = str(len(run.frames))
        except (ValueError, KeyError):
            frames = "0"
        status = "running or died"
    phases = ", ".join(run.phases) or "-"  # also those chosen while it ran
    return [run.uid[:8], when, str(start.get("plan_name", "?")), phases, status, frames]


def runs(args: argparse.Namespace, console: Console) -> int:
    """Print a table of the catalog's runs, newest last."""
    try:
        catalog = _open(args.path, args.api_key)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        return 2
    n = len(catalog)
    table = Table(title=f"{n} runs in {args.path}")
    for column in ("uid", "start", "plan", "phases", "exit status", "frames"):
        table.add_column(column, justify="right" if column == "frames" else "left")
    for i in range(max(0, n - args.limit), n):
        table.add_row(*_row(catalog[i]))
    console.print(table)
    catalog.close()
    return 0
