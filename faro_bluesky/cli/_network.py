"""``faro-bluesky status --follow`` and ``faro-bluesky analyzer``: runs seen over the network.

``status --follow tcp://host:5578`` shows the progress of runs published by another
process (`faro_bluesky.network.publish`) through a 0MQ proxy (``bluesky-0MQ-proxy``):
the same `StatusCallback` and `ProgressDisplay` as the shell, fed by a follower instead
of a RunEngine, plus one plain line when a run starts and when it ends (whatever the
terminal). ``analyzer --follow tcp://host:5578 --bind tcp://*:5579`` runs the closed-loop
analyzer on that stream and serves its masks to `RemoteMasks` (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

COMMANDS = ("status", "analyzer")


def add_commands(sub: Any) -> None:
    """Register ``status`` and ``analyzer`` on the ``faro-bluesky`` subparsers."""
    status = sub.add_parser("status", help="follow runs published by another process")
    status.add_argument(
        "--follow", required=True, metavar="ADDRESS", help="the 0MQ proxy's output address"
    )
    status.add_argument(
        "--runs", type=int, default=None, metavar="N", help="exit after N runs (default: never)"
    )
    status.add_argument("--no-progress", action="store_true", help="only the start/end lines")
    _prefix(status)
    analyzer = sub.add_parser("analyzer", help="serve closed-loop masks from the document stream")
    analyzer.add_argument(
        "--follow", required=True, metavar="ADDRESS", help="the 0MQ proxy's output address"
    )
    analyzer.add_argument(
        "--bind",
        default="tcp://127.0.0.1:5579",
        metavar="ADDRESS",
        help="where RemoteMasks connect (tcp://*:5579 for other machines)",
    )
    analyzer.add_argument(
        "--analyzer",
        default=None,
        metavar="MODULE:CALLABLE",
        help="a function returning the Analyzer (module or file.py); default: Otsu on "
        "--channel, nearest-neighbour tracking, FractionOfCells(0.5)",
    )
    analyzer.add_argument("--channel", default="miRFP", help="preset the default segmenter reads")
    analyzer.add_argument(
        "--frame-timeout", type=float, default=2.0, help="s an event waits for its pixels"
    )
    _prefix(analyzer)


def _prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        default="",
        help="only documents published with this prefix (several RunEngines, one proxy)",
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``status`` or ``analyzer``; exit status 2 with the reason on a bad address."""
    try:
        if args.command == "status":
            return _status(args, console)
        return _analyzer(args, console)
    except (ConnectionError, TimeoutError, ValueError, ImportError, AttributeError) as exc:
        console.print(f"[red]faro-bluesky {args.command}: {escape(str(exc))}", soft_wrap=True)
        return 2


def _status(args: argparse.Namespace, console: Console) -> int:
    from ..callbacks import ProgressDisplay, RunStatus, StatusCallback
    from ..network import follow

    if args.runs is not None and args.runs < 1:
        raise ValueError(f"--runs {args.runs} must be >= 1")
    status = StatusCallback(tick_s=0.5)
    display = None if args.no_progress else ProgressDisplay(console, status=status)
    finished = threading.Event()
    seen: dict[str, bool] = {}  # run uid -> ended

    def on_change(snap: RunStatus) -> None:
        uid = snap.run_uid
        if uid is None:
            return
        name = snap.plan_name or "run"
        if uid not in seen:
            seen[uid] = False
            console.print(f"run {uid[:8]} started: {name}", soft_wrap=True, markup=False)
        if not snap.active and not seen[uid]:
            seen[uid] = True
            total = snap.visits_total if snap.visits_total is not None else "?"
            console.print(
                f"run {uid[:8]} {snap.state}: {name}, {snap.visits_done}/{total} visits, "
                f"{snap.frames_received} frames, {snap.stim_frames} stim frames, "
                f"{snap.n_errors} error(s)",
                soft_wrap=True,
                markup=False,
            )
            if args.runs is not None and sum(seen.values()) >= args.runs:
                finished.set()

    status.changed.connect(on_change)
    follower = follow(args.follow, status, prefix=args.prefix.encode())
    console.print(f"following {args.follow} (Ctrl-C to stop)", soft_wrap=True, markup=False)
    try:
        while follower.alive and not finished.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        follower.stop()
        status.changed.disconnect(on_change)
        if display is not None:
            display.close()
        status.close()
    if follower.error is not None:
        raise ConnectionError(f"following {args.follow} failed: {follower.error}")
    return 0


def _analyzer(args: argparse.Namespace, console: Console) -> int:
    from ..network import AnalyzerService

    analyzer = _load_analyzer(args.analyzer) if args.analyzer else _default_analyzer(args)
    try:
        service = AnalyzerService(
            analyzer,
            args.follow,
            bind=args.bind,
            frame_timeout=args.frame_timeout,
            prefix=args.prefix.encode(),
        ).start()
        console.print(
            f"analyzer: documents from {args.follow}, masks served at {service.address} "
            "(Ctrl-C to stop)",
            soft_wrap=True,
            markup=False,
        )
        service.serve_forever()
        s = service.stats()
        console.print(
            f"analyzer: {s['documents']} documents, {s['masks_sent']} masks sent; frames: "
            f"{s['from_network']} received, {s['from_disk']} read from disk, "
            f"{s['missing']} missing; events held for pixels {s['held_ms']:.0f} ms in all",
            soft_wrap=True,
            markup=False,
        )
    finally:
        analyzer.close()
    return 0


def _default_analyzer(args: argparse.Namespace) -> Any:
    from ..analysis import Analyzer
    from ..analysis.components import FractionOfCells, OtsuSegmenter

    return Analyzer(segmenter=OtsuSegmenter(channel=args.channel), stimulator=FractionOfCells(0.5))


def _load_analyzer(spec: str) -> Any:
    """Call ``MODULE:CALLABLE`` (``pkg.mod:make`` or ``path/file.py:make``) for the analyzer."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ValueError(f"--analyzer {spec!r}: give MODULE:CALLABLE, e.g. my_lab.analysis:make")
    if target.endswith(".py"):
        path = Path(target)
        loader = importlib.util.spec_from_file_location(path.stem, path)
        if loader is None or loader.loader is None or not path.is_file():
            raise ValueError(f"--analyzer {spec!r}: {path} is not a Python file")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    factory = getattr(module, attr)
    analyzer = factory() if callable(factory) else factory
    if not callable(analyzer) or not hasattr(analyzer, "board"):
        raise ValueError(f"--analyzer {spec!r} gave {analyzer!r}, not an Analyzer")
    return analyzer
