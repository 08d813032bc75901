"""``faro-bluesky replay | reanalyze | report UID``: work on stored runs."""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._storage import _open


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uid", help="run uid (a unique prefix is enough) or -1 for the newest")
    parser.add_argument("--data", default="faro-data", help="catalog directory or server URL")
    parser.add_argument("--api-key", default=None, help="API key, for a server URL")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``replay``."""
    _common(parser)
    parser.add_argument("--timing", choices=("fast", "original"), default="fast")
    parser.add_argument("--speed", type=float, default=1.0, help="x faster (original timing)")
    parser.add_argument("--analyze", action="store_true", help="into a fresh default analyzer")


def add_reanalyze_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``reanalyze``."""
    _common(parser)
    parser.add_argument("--segmenter", choices=("otsu", "cellpose", "stardist"), default="otsu")
    parser.add_argument("--channel", default="miRFP", help="preset the segmenter reads")
    parser.add_argument("--erk", default="ERKKTR", help="ERK-KTR preset for features ('' for none)")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``report``."""
    _common(parser)
    parser.add_argument("--out", type=Path, default=None, help="PNG path")


def _run(args: argparse.Namespace) -> tuple[Any, Any]:
    catalog = _open(args.data, args.api_key)
    # "-1" is a position (newest); anything else a uid or prefix, digits included
    key: Any = int(args.uid) if args.uid.startswith("-") and args.uid[1:].isdigit() else args.uid
    try:
        return catalog, catalog[key]
    except (KeyError, IndexError):
        catalog.close()
        raise


def _guarded(command: Any) -> Any:
    """Print what went wrong and how to fix it (exit status 2) instead of a traceback."""

    def run(args: argparse.Namespace, console: Console) -> int:
        try:
            return command(args, console)
        except (KeyError, IndexError, ValueError, TypeError, PermissionError, ImportError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            console.print(
                f"[red]faro-bluesky {args.command}: {escape(str(message))}", soft_wrap=True
            )
            return 2

    run.__doc__ = command.__doc__
    return run


def _analyzer(args: argparse.Namespace, output: Path | None = None) -> Any:
    from ..analysis import Analyzer
    from ..analysis import components as c

    segmenters = {
        "otsu": c.OtsuSegmenter,
        "cellpose": c.CellposeSegmenter,
        "stardist": c.StardistSegmenter,
    }
    features = c.ErkKtrFeatures(channel=args.erk) if args.erk else None
    return Analyzer(
        segmenter=segmenters[args.segmenter](channel=args.channel),
        features=features,
        output=output,
    )


@_guarded
def replay(args: argparse.Namespace, console: Console) -> int:
    """Replay a stored run's documents (into a progress display, optionally an analyzer)."""
    import tempfile

    from ..callbacks import ProgressDisplay, StatusCallback
    from ..storage import replay as replay_run

    if args.speed <= 0:
        raise ValueError(f"--speed {args.speed:g} must be > 0 (2 = twice as fast as recorded)")
    catalog, run = _run(args)
    counts: collections.Counter[str] = collections.Counter()
    status = StatusCallback(tick_s=None)
    display = ProgressDisplay(console, status=status)
    callbacks: list[Any] = [lambda name, doc: counts.update([name]), status]
    analyzer = None
    if args.analyze:
        args.segmenter, args.channel, args.erk = "otsu", "miRFP", ""
        analyzer = _analyzer(args, Path(tempfile.mkdtemp(prefix="faro-replay-")))
        callbacks.append(analyzer)
    t0 = time.monotonic()
    n = replay_run(run, callbacks, timing=args.timing, speed=args.speed)
    display.close()
    table = Table(title=f"replayed run {run.uid}", show_header=False)
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    table.add_row("documents", str(n))
    table.add_row("elapsed", f"{time.monotonic() - t0:.2f} s ({args.timing})")
    if analyzer is not None:
        tracks = analyzer.tracks()
        table.add_row("tracks", f"{len(tracks)} rows in {analyzer.root}")
        analyzer.close()
    console.print(table)
    catalog.close()
    return 0


@_guarded
def reanalyze(args: argparse.Namespace, console: Console) -> int:
    """Analyse a stored run again and record the result as a new linked run."""
    from ..storage import reanalyze as reanalyze_run

    catalog, run = _run(args)
    analyzer = _analyzer(args)
    try:
        new = reanalyze_run(run, analyzer, catalog)
    except Exception:
        catalog.close()
        raise
    finally:
        analyzer.close()
    tracks = new.tracks()
    console.print(
        f"reanalysis of {run.uid} recorded as run [bold]{new.uid}[/] ({new.exit_status}): "
        f"{len(tracks)} track rows, {len(analyzer.errors)} errors, "
        f"results in {new.start['analysis_store']}",
        soft_wrap=True,
    )
    if analyzer.errors:
        console.print(f"[red]first error: {escape(str(analyzer.errors[0]))}", soft_wrap=True)
    catalog.close()
    return 0 if new.exit_status == "success" else 1


@_guarded
def report(args: argparse.Namespace, console: Console) -> int:
    """Write a stored run's report PNG and print its path."""
    from ..storage import write_report

    catalog, run = _run(args)
    base = catalog.path if catalog.path is not None else Path(".")
    out = args.out or Path(base) / "reports" / f"{run.uid[:8]}.png"
    if "source_run" in run.start:  # a re-analysis: the source's images, these tracks
        path = write_report(catalog[run.start["source_run"]], out, tracks=run.tracks())
    else:
        path = write_report(run, out)
    console.print(f"report of run {run.uid}: [bold]{path}[/]", soft_wrap=True)
    catalog.close()
    return 0
