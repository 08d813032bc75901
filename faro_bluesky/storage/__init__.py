"""Storage: every run in a tiled catalog, its zarr store, raw document logs, replay.

``catalog = Catalog.local("faro-data")`` opens (or creates) an embedded catalog, a plain
directory; ``catalog.subscribe(RE)`` records every run; ``catalog[-1]`` is the newest run,
with its frames table, per-FOV image stacks, the analyzer's tracks and labels, and its
documents; ``replay(run, callbacks)`` feeds a stored run to new callbacks.
``faro-bluesky serve PATH`` serves the same directory to other machines
(``Catalog.from_uri``), labels and tracks included: at each stop they become the run's
``labels`` and ``tracks`` streams (docs/decisions/0053-analysis-outputs-in-tiled.md).
"""

from ._catalog import Catalog
from ._doclog import DocumentLog, LoggedDocument, read_document_log, writer_alive
from ._documents import live_order
from ._embedded import CatalogDirectory, build_app
from ._frames import FRAME_COLUMNS
from ._reanalyze import reanalyze
from ._recorder import Recorder, Subscription
from ._replay import databroker_run, replay, timed_documents
from ._report import write_report
from ._run import Run
from ._store import TRACK_COLUMNS, RunStore
from ._timing import LATENCY_STAGES, RunTiming, events_table, run_timing
from ._writer import CatalogWriter

__all__ = [
    "FRAME_COLUMNS",
    "LATENCY_STAGES",
    "TRACK_COLUMNS",
    "Catalog",
    "CatalogDirectory",
    "CatalogWriter",
    "DocumentLog",
    "LoggedDocument",
    "Recorder",
    "Run",
    "RunStore",
    "RunTiming",
    "Subscription",
    "build_app",
    "databroker_run",
    "events_table",
    "live_order",
    "read_document_log",
    "reanalyze",
    "replay",
    "run_timing",
    "timed_documents",
    "write_report",
    "writer_alive",
]
