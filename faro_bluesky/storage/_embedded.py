"""The catalog directory and the tiled objects built over it (embedded app, server app).

One directory holds everything a catalog knows (docs/decisions/0017-embedded-catalog.md)::

    <root>/faro-catalog.json  what this is: {"format": "faro-bluesky catalog", "tables": ...}
    <root>/catalog.db         tiled's SQLite catalog (run metadata, structures, data sources)
    <root>/tables.sqlite      tiled's tables: the events of every stream (or storage.duckdb)
    <root>/tiled_data/        tiled's own arrays (internal arrays of events, e.g. masks)
    <root>/data/              the runs' zarr stores, written by the camera (readable storage)
    <root>/documents/         the raw document log of every run (<start uid>.jsonl)

Tables default to SQLite, not DuckDB: DuckDB lets one process at a time open its file
(measured: a second process gets "Could not set lock on file"), which rules out a
server, a second IPython or ``faro-bluesky runs`` next to the acquiring session, and the
writer process of the embedded catalog (decision 0059).

Both SQLite files are in WAL mode (`use_wal`): in SQLite's default rollback journal a
reader holds a lock that makes another process's COMMIT fail at once (tiled's ADBC
connections have no busy timeout). Measured: reading a run in a loop while the writer
process appended to it failed 6 reads in 82 and, worse, the writer's COMMIT, which lost
the rest of the run; in WAL mode readers and the writer never block one another (none
failed). WAL needs the directory on a local disk (not a network file system).

The embedded catalog is a tiled app called in-process (no socket, no server process);
`faro-bluesky serve` puts the same app behind uvicorn with an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import sqlite3
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MARKER = "faro-catalog.json"
CATALOG_DB = "catalog.db"
TABLES = {"sqlite": "tables.sqlite", "duckdb": "storage.duckdb"}
ARRAYS_DIR = "tiled_data"
DATA_DIR = "data"
LOGS_DIR = "documents"


@dataclass(frozen=True)
class CatalogDirectory:
    """Where each part of a catalog lives inside its directory."""

    root: Path
    tables: str = "sqlite"
    """Engine of tiled's tables: ``sqlite`` (any number of processes) or ``duckdb``."""
    extra_readable: tuple[Path, ...] = field(default=())

    @classmethod
    def at(
        cls,
        path: str | Path,
        readable_storage: Sequence[str | Path] = (),
        *,
        tables: str | None = None,
    ) -> CatalogDirectory:
        """The catalog directory at ``path`` (absolute paths: tiled stores them as URIs).

        ``tables`` chooses the table engine of a new directory (default ``sqlite``); an
        existing directory keeps the engine it was made with.
        """
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise ValueError(
                f"path={str(path)!r} is a file: a catalog is a directory; pass a directory "
                "(it is created if missing)"
            )
        if tables is not None and tables not in TABLES:
            raise ValueError(f"tables={tables!r} must be one of {sorted(TABLES)}")
        existing = [engine for engine, name in TABLES.items() if (root / name).exists()]
        if (root / MARKER).is_file():
            existing = [json.loads((root / MARKER).read_text())["tables"]]
        if len(existing) > 1:
            raise ValueError(f"{root} holds both {sorted(TABLES.values())}: keep one")
        if existing and tables is not None and tables != existing[0]:
            raise ValueError(
                f"tables={tables!r}: the catalog in {root} already uses {existing[0]}; "
                "leave tables= unset for an existing catalog"
            )
        engine = existing[0] if existing else (tables or "sqlite")
        extra = tuple(Path(p).expanduser().resolve() for p in readable_storage)
        return cls(root, engine, extra)

    @property
    def catalog_db(self) -> Path:
        """The SQLite catalog database of tiled."""
        return self.root / CATALOG_DB

    @property
    def data_dir(self) -> Path:
        """Where the camera must write its zarr stores for tiled to serve them."""
        return self.root / DATA_DIR

    @property
    def logs_dir(self) -> Path:
        """Raw document logs, one per run."""
        return self.root / LOGS_DIR

    @property
    def catalog_uri(self) -> str:
        """SQLAlchemy URI of the SQLite catalog (async driver, as tiled needs)."""
        return f"sqlite+aiosqlite:///{self.catalog_db}"

    @property
    def writable_storage(self) -> list[str]:
        """Writable storage for tiled: a directory for arrays, a database for tables."""
        tables = self.root / TABLES[self.tables]
        return [str(self.root / ARRAYS_DIR), f"{self.tables}:///{tables}"]

    @property
    def readable_storage(self) -> list[str]:
        """Directories tiled may serve external files from: ``data/`` plus any extras."""
        return [str(self.data_dir), *(str(p) for p in self.extra_readable)]

    def create(self) -> None:
        """Make the directories and an initialised catalog database if missing."""
        for sub in (self.root, self.root / ARRAYS_DIR, self.data_dir, self.logs_dir):
            sub.mkdir(parents=True, exist_ok=True)
        marker = self.root / MARKER
        if not marker.is_file():
            marker.write_text(json.dumps({"format": "faro-bluesky catalog", "tables": self.tables}))
        init_catalog_database(self.catalog_uri)
        use_wal(self.catalog_db)
        if self.tables == "sqlite":  # (tiled opens the file later; an empty one is fine)
            use_wal(self.root / TABLES["sqlite"])


def use_wal(path: Path) -> None:
    """Put the SQLite database at ``path`` (created if missing) in WAL mode, once for good.

    tiled asks for WAL when it creates its catalog, but inside a transaction, where SQLite
    ignores the request; its tables file it never asks. A catalog another process holds
    open may refuse the switch: it is then tried again at the next opening.
    """
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5.0)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        logger.warning("%s stays in rollback-journal mode for now (%s)", path, exc)


def init_catalog_database(uri: str) -> bool:
    """Create tiled's tables in the database at ``uri`` unless already there; True if created.

    tiled's own ``init_if_not_exists=True`` runs ``python -m tiled catalog init`` in a
    subprocess, which re-imports tiled (about 6 s here). Doing the same two steps
    (create tables, stamp the alembic revision) in-process costs about 0.1 s. They run in
    a short-lived thread so that a caller inside a running event loop (Jupyter) is fine.
    """
    from sqlalchemy.ext.asyncio import create_async_engine
    from tiled.alembic_utils import UninitializedDatabase, check_database, stamp_head
    from tiled.catalog.alembic_constants import ALEMBIC_DIR, ALEMBIC_INI_TEMPLATE_PATH
    from tiled.catalog.core import ALL_REVISIONS, REQUIRED_REVISION, initialize_database

    async def setup() -> bool:
        engine = create_async_engine(uri)
        try:
            try:
                await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
                return False
            except UninitializedDatabase:
                await initialize_database(engine)
                return True
        finally:
            await engine.dispose()

    def work() -> bool:
        created = asyncio.run(setup())
        if created:
            with warnings.catch_warnings():  # tiled's alembic.ini template, not ours to fix
                warnings.simplefilter("ignore", DeprecationWarning)
                stamp_head(ALEMBIC_INI_TEMPLATE_PATH, ALEMBIC_DIR, uri)
        return created

    with ThreadPoolExecutor(1, thread_name_prefix="tiled-init") as pool:
        return pool.submit(work).result()


ROOT_SPEC = {"name": "CatalogOfBlueskyRuns", "version": "3.0"}
"""The root's spec: any tiled client with bluesky-tiled-plugins installed then opens the
catalog as ``CatalogOfBlueskyRuns`` (``catalog[-1]``, ``catalog["<uid prefix>"]``,
``ScanID``, ``PartialUID``, ``TimeRange``); version 3 says "SQL-backed, BlueskyRun v3
runs" (the plugin builds its uid lookups on that). Decision 0043."""


def catalog_adapter(directory: CatalogDirectory) -> Any:
    """The tiled catalog adapter over ``directory`` (creating it if needed)."""
    import tiled.catalog

    directory.create()
    return tiled.catalog.from_uri(
        directory.catalog_uri,
        specs=[dict(ROOT_SPEC)],
        writable_storage=directory.writable_storage,
        readable_storage=directory.readable_storage,
        init_if_not_exists=False,  # done in-process by create()
    )


def serialization_registry() -> Any:
    """The serialisers of tiled plus ``application/json-seq`` for runs (bluesky plugins).

    Without it ``run.documents()`` fails with 406 (tiled's default app does not register
    the exporter).
    """
    import tiled.media_type_registration as registration
    from bluesky_tiled_plugins.exporters import json_seq_exporter

    registry = copy.deepcopy(registration.default_serialization_registry)
    registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)
    return registry


def build_app(directory: CatalogDirectory, *, api_key: str | None = None) -> Any:
    """The tiled ASGI app over ``directory``; with ``api_key``, single-user key auth."""
    from tiled.config import Authentication
    from tiled.server.app import build_app as tiled_build_app

    authentication = None if api_key is None else Authentication(single_user_api_key=api_key)
    return tiled_build_app(
        catalog_adapter(directory),
        authentication=authentication,
        serialization_registry=serialization_registry(),
    )


def in_process_client(directory: CatalogDirectory) -> Any:
    """A tiled client calling the app in-process (no socket): the embedded catalog."""
    from tiled.client import Context, from_context

    app = build_app(directory)
    with warnings.catch_warnings():
        # tiled calls in-process apps through starlette's TestClient, which warns that
        # it prefers httpx2; nothing for our users to act on (bluesky-stack.md 5.7).
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        context = Context.from_app(app)
    return from_context(context)
