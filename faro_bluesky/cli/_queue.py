"""``faro-bluesky queue``: the queue server on the instrument profile, until Ctrl-C.

Starts Redis (Valkey, on a free port; or ``--redis HOST:PORT``), the RE Manager whose
worker opens the profile's session (the shell's wiring: catalog, analyzer, baseline,
suspenders) and, with ``--http``, bluesky's HTTP server; opens the environment; prints
how to reach it. Ctrl-C stops a running plan between visits (its data kept), closes the
worker and stops the processes in order. docs/deployment.md, section "Queue server".
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._profile import mm_config_from


def add_commands(sub: Any) -> None:
    """Register ``queue`` on the ``faro-bluesky`` subparsers."""
    parser = sub.add_parser("queue", help="queue server (bluesky-queueserver) on the profile")
    parser.add_argument("--data", type=Path, default=Path("faro-data"), help="catalog directory")
    parser.add_argument("--profile", type=Path, default=None, help="profile (as for shell)")
    parser.add_argument("--config", type=Path, default=None, help="Micro-Manager config")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument(
        "--redis", default=None, metavar="HOST:PORT", help="a running Redis (default: start one)"
    )
    parser.add_argument(
        "--redis-port", type=int, default=None, help="port of the started one (default: free)"
    )
    parser.add_argument(
        "--redis-prefix", default="faro", help="key prefix in Redis (one per microscope)"
    )
    parser.add_argument(
        "--control",
        default="tcp://127.0.0.1:60615",
        help="RE Manager control address (qserver -a ...; tcp://*:60615 for other machines)",
    )
    parser.add_argument("--info", default="tcp://127.0.0.1:60625", help="console output address")
    parser.add_argument(
        "--publish", default=None, metavar="ADDRESS", help="0MQ proxy input for the documents"
    )
    parser.add_argument(
        "--http", default=None, metavar="[HOST:]PORT", help="also start the HTTP server there"
    )
    parser.add_argument("--api-key", default=None, help="HTTP single-user key (default: random)")
    parser.add_argument("--permissions", type=Path, default=None, help="your permissions file")
    parser.add_argument(
        "--state", type=Path, default=None, help="lists, Redis data, logs (default DATA/queue)"
    )
    parser.add_argument("--no-open", action="store_true", help="leave the environment closed")


def http_address(value: str | None) -> tuple[str, int] | None:
    """``--http 60610`` or ``--http host:60610`` as (host, port)."""
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http {value!r}: give PORT or HOST:PORT, e.g. 127.0.0.1:60610")
    return host or "127.0.0.1", int(port)


def server_from(args: argparse.Namespace) -> Any:
    """The `QueueServer` the arguments describe (not started)."""
    try:
        from ..queue import QueueServer
    except ImportError as exc:  # pragma: no cover - without the extra
        raise ImportError(f"{exc}: install the 'queue' extra (uv sync --extra queue)") from exc

    return QueueServer(
        args.data,
        profile=args.profile,
        mm_config=mm_config_from(args.config),
        seed=args.seed,
        redis=args.redis,
        redis_port=args.redis_port,
        redis_prefix=args.redis_prefix,
        control=args.control,
        info=args.info,
        publish=args.publish,
        http=http_address(args.http),
        api_key=args.api_key,
        state=args.state,
        permissions=args.permissions,
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Start the queue server, print where it is, serve until Ctrl-C or the manager exits."""
    try:
        server = server_from(args)
    except (ValueError, ImportError) as exc:
        console.print(f"[red]faro-bluesky queue: {escape(str(exc))}", soft_wrap=True)
        return 2
    # The children run in sessions of their own (a terminal's Ctrl-C is for this process
    # alone), so this process must outlive them: SIGTERM (kill, systemd) and SIGHUP (the
    # terminal closed) stop everything in order, as Ctrl-C does.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _serve(server, args, console)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(server: Any, args: argparse.Namespace, console: Console) -> int:
    console.print(f"starting the queue server on the profile {server.profile} ...", markup=False)
    try:
        server.start(open_environment=not args.no_open)  # stops what it started if it fails
    except (RuntimeError, TimeoutError, OSError, ImportError) as exc:
        console.print(f"[red]faro-bluesky queue: {escape(str(exc))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("interrupted while starting: stopped", markup=False)
        return 130
    _print_summary(server, console)
    try:
        assert server.manager is not None
        code = server.manager.wait()  # until Ctrl-C, or `qserver manager stop`
        console.print(f"the RE Manager exited ({code})", markup=False)
    except KeyboardInterrupt:
        console.print("stopping: a running plan is stopped between visits ...", markup=False)
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a second one would cut the shutdown
            signal.signal(sig, signal.SIG_IGN)
        server.close()
    console.print("stopped", markup=False)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _print_summary(server: Any, console: Console) -> None:
    control = server.client_address(server.control)
    lines = [
        f"RE Manager   {server.control} (environment: {server.data}, state: {server.state})",
        f"Redis        {server.redis_address}",
        f'qserver      qserver -a {control} status | queue add plan \'{{"name": "demo"}}\' | '
        "queue start | re pause | re resume | re stop | re abort",
        f"Python       REManagerAPI(zmq_control_addr={control!r})",
    ]
    if server.http_uri:
        lines.append(f"HTTP         {server.http_uri}  (API key {server.api_key})")
    if server.publish:
        lines.append(f"documents    to {server.publish}: faro-bluesky status --follow <proxy out>")
    lines.append("Ctrl-C stops it (a running plan is stopped, its data kept)")
    for line in lines:
        console.print(line, markup=False, soft_wrap=True, highlight=False)
