"""`Catalog`: every run in a tiled catalog, embedded (a directory) or behind a tiled server.

``Catalog.local(path)`` is the default (ARCHITECTURE decision 10): a directory with tiled's
SQLite catalog and tables (0017), the runs' zarr stores and raw document logs, used through
tiled's app called in-process, no server. ``Catalog.from_uri(url, api_key=...)`` is the
same API against a tiled server (``faro-bluesky serve PATH`` over such a directory).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ._doclog import DocumentLog
from ._embedded import ARRAYS_DIR, CatalogDirectory, in_process_client
from ._phases import backfill_phases
from ._queries import apply, criteria
from ._recorder import Recorder, Subscription
from ._recover import ingest_log, recover_runs
from ._run import Run
from ._writer_process import catalog_writer


class Catalog:
    """Runs in a tiled catalog. Build with `local` or `from_uri`.

    ``catalog[uid]``, ``catalog[-1]`` (newest), ``len(catalog)``, ``for run in catalog``,
    ``catalog.search(...)``; `subscribe` records a RunEngine's runs into it. The tiled
    client underneath (`client`) is bluesky-tiled-plugins' ``CatalogOfBlueskyRuns``
    (decision 0043), so its queries (``ScanID``, ``PartialUID``, ``TimeRange``) work here.
    """

    def __init__(
        self,
        client: Any,
        *,
        directory: CatalogDirectory | None = None,
        log_dir: Path | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.client = client
        """The tiled container client (for anything this class does not cover)."""
        self.directory = directory
        self.log_dir = log_dir
        """Where raw document logs are written and read (None: no raw logs)."""
        self.data_dir = data_dir
        """Where the camera should write (``sim_microscope(data_dir=catalog.data_dir)``)."""
        self._subscriptions: dict[int, Subscription] = {}

    # -------------------------------------------------------------- opening
    @classmethod
    def local(
        cls,
        path: str | Path = "faro-data",
        *,
        readable_storage: Sequence[str | Path] = (),
        recover: bool = True,
        tables: str | None = None,
    ) -> Catalog:
        """The embedded catalog in directory ``path`` (created if missing).

        :param readable_storage: more directories the camera may write to (``path/data``
            always is one).
        :param recover: rebuild runs whose writing process died (e.g. killed) from their
            raw document logs; see `recover`.
        :param tables: table engine of a new catalog: ``"sqlite"`` (default; several
            processes may open the catalog at once) or ``"duckdb"`` (one process only).
        """
        directory = CatalogDirectory.at(path, readable_storage, tables=tables)
        catalog = cls(
            in_process_client(directory),
            directory=directory,
            log_dir=directory.logs_dir,
            data_dir=directory.data_dir,
        )
        if recover:
            catalog.recover()
        backfill_phases(catalog.client)  # runs recorded before phases were kept
        return catalog

    @classmethod
    def from_uri(
        cls,
        url: str,
        api_key: str | None = None,
        *,
        log_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
    ) -> Catalog:
        """The catalog served by a tiled server at ``url`` (``http://host:port``).

        :param api_key: the server's key (``faro-bluesky serve`` prints it); default the
            ``TILED_API_KEY`` environment variable, as tiled does.
        :param log_dir: where this machine keeps raw document logs (none if None).
        :param data_dir: where the camera writes; must be in the server's readable storage.
        """
        from tiled.client import from_uri
        from tiled.client.utils import ClientError

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url={url!r} must start with http:// or https://")
        refused = PermissionError(
            f"the server at {url} refused "
            + ("the request without a key" if api_key is None else "this api_key")
            + ": pass api_key=<the key `faro-bluesky serve` printed or was given>"
        )
        try:
            client = from_uri(url, api_key=api_key)
        except ClientError as exc:
            if exc.response.status_code in (401, 403):
                raise refused from exc
            raise
        except RuntimeError as exc:  # tiled: "This server requires API key authentication"
            if "API key" in str(exc):
                raise refused from exc
            raise
        return cls(
            client,
            log_dir=Path(log_dir) if log_dir is not None else None,
            data_dir=Path(data_dir) if data_dir is not None else None,
        )

    @property
    def path(self) -> Path | None:
        """The catalog directory (None for a remote catalog)."""
        return self.directory.root if self.directory is not None else None

    def __repr__(self) -> str:
        where = self.path if self.path is not None else self.client.uri
        return f"<Catalog {where} ({len(self)} runs)>"

    # ------------------------------------------------------------ recording
    def subscribe(
        self,
        RE: Any,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.8,
        drain_timeout: float = 120.0,
        process: bool | None = None,
    ) -> Subscription:
        """Record every run of ``RE`` into this catalog, plus a raw document log per run.

        The catalog is written in the background (the RunEngine never waits on it, except
        at each run's stop until that run is written): by a child process for an embedded
        SQLite catalog, by a thread otherwise (see `recorder`). The raw log is written and
        flushed per document on the RunEngine's thread.

        :param batch_size: events per catalog write at most (1: one write per event).
        :param max_delay: seconds an event waits at most for its batch; a live reader of
            a running run is this far behind (plus one write).
        :param drain_timeout: the longest a stop waits for the catalog to catch up (s).
        :param process: write from a child process (None: if the catalog is embedded
            with SQLite tables).
        """
        current = self._subscriptions.get(id(RE))
        if current is not None and current.active:
            raise ValueError(
                "RE is already subscribed to this catalog: every run would be written twice; "
                "call .unsubscribe() on the first subscription to re-subscribe"
            )
        recorder = self.recorder(
            batch_size=batch_size, max_delay=max_delay, drain_timeout=drain_timeout, process=process
        )
        token = RE.subscribe(recorder)
        subscription = Subscription(RE, (token,), recorder)
        self._subscriptions[id(RE)] = subscription
        return subscription

    def recorder(
        self,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.8,
        drain_timeout: float = 120.0,
        process: bool | None = None,
    ) -> Recorder:
        """A ``(name, doc)`` callable that records runs into this catalog (and raw logs).

        `subscribe` gives one to a RunEngine; documents composed without one (e.g.
        `reanalyze`) go through it too. Call its ``close()`` when done.

        An embedded SQLite catalog is written by a child process (`ProcessCatalogWriter`,
        started here so it is ready by the first stop): tiled's server code then runs on
        another core instead of holding this interpreter (decision 0059). A tiled server
        is another process already, and DuckDB tables admit one process: those are
        written by a thread (`CatalogWriter`), as on Windows. ``process`` forces the choice.
        """
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        readable = None
        if self.directory is not None:
            readable = [Path(p) for p in self.directory.readable_storage]
        writer = catalog_writer(
            self.client, self.directory, batch_size=batch_size, max_delay=max_delay, process=process
        )
        return Recorder(
            writer,
            DocumentLog(self.log_dir) if self.log_dir is not None else None,
            readable,
            drain_timeout,
        )

    def recover(self) -> list[str]:
        """Rebuild, from their raw logs, runs whose writing process died mid-run.

        A run qualifies when its log's writer is gone (no process holds its lock) and
        the catalog lacks its stop document (or the run). It is written anew from the
        log, with a stop document ``exit_status="fail"`` whose reason says so; the raw
        log itself is left as it is. Returns the uids rebuilt.
        """
        if self.log_dir is None:
            return []
        return recover_runs(self.client, self.log_dir, arrays_dir=self._arrays_dir)

    def ingest(self, log: str | Path) -> Run:
        """Write a run from a raw document log into the catalog (replacing its entry)."""
        uid = ingest_log(self.client, Path(log), arrays_dir=self._arrays_dir)
        return self[uid]

    @property
    def _arrays_dir(self) -> Path | None:
        """Tiled's own arrays of an embedded catalog (None for a remote one)."""
        return self.directory.root / ARRAYS_DIR if self.directory is not None else None

    # -------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self.client)

    def __contains__(self, uid: object) -> bool:
        """Whether a run has exactly this start uid (a prefix is not enough, unlike ``[]``)."""
        from tiled.queries import Eq

        return isinstance(uid, str) and len(self.client.search(Eq("start.uid", uid))) > 0

    def __iter__(self) -> Iterator[Run]:
        for item in self.client.values():
            yield self._wrap(item)

    def uids(self) -> list[str]:
        """Start uids, oldest first."""
        return list(self.client)

    def __getitem__(self, key: str | int) -> Run:
        """Run by start uid (or a unique prefix of 5+ characters), or by position (-1 = newest).

        An int is a position, as in a list (``catalog[0]`` is the oldest run), not a
        scan_id as in bluesky-tiled-plugins' ``CatalogOfBlueskyRuns``: for scan ids use
        ``catalog.search(ScanID(n))`` or that client (`client`) directly. The uid lookup
        is the plugin's (the catalog root carries its spec, decision 0043).
        """
        if isinstance(key, int) and not isinstance(key, bool):
            n = len(self.client)
            if not -n <= key < n:
                raise IndexError(f"run index {key} out of range for {n} runs")
            return self._wrap(self.client.values()[key])
        if not isinstance(key, str):
            raise TypeError(f"key={key!r} must be a uid (str) or a position (int)")
        missing = f"no run with uid {key!r} in {self!r}"
        if not key or any(c in key for c in "%_\\"):  # SQL LIKE wildcards: not a uid
            raise KeyError(missing)
        try:  # (a container without the spec, e.g. another server's: whole uids only)
            return self._wrap(self.client[key])
        except KeyError:
            raise KeyError(missing) from None
        except ValueError as exc:  # the plugin: prefix too short, or several matches
            raise KeyError(f"{missing}: {exc}") from None

    def _wrap(self, item: Any) -> Run:
        return Run(item, log_dir=self.log_dir)

    def search(
        self,
        *queries: Any,
        plan: str | None = None,
        phase: str | None = None,
        sample: str | None = None,
        instrument: str | None = None,
        since: float | str | datetime | None = None,
        until: float | str | datetime | None = None,
        **start_fields: Any,
    ) -> Catalog:
        """Runs matching all the given criteria, as a `Catalog`.

        :param queries: tiled or bluesky-tiled-plugins queries, e.g. ``Key("sample") ==
            "HeLa"``, ``ScanID(3)``, ``PartialUID("1a2b3")``, ``TimeRange(since="2026-11")``
            (the catalog root is a ``CatalogOfBlueskyRuns``, which turns them into
            standard tiled queries; a bare key means a start-document field).
        :param plan: the plan's name (``"optogenetic_plan"``).
        :param phase: a phase the run contains: planned at its start, or chosen while it
            ran (by a decision in the experiment) and begun.
        :param sample: ``md={"sample": ...}`` given to the plan.
        :param instrument: the microscope that recorded it (start ``instrument``; a
            session sets it from its profile).
        :param since: started at or after (ISO string, datetime or epoch s).
        :param until: started before.
        :param start_fields: any other start-document field, matched for equality.
        """
        found = criteria(
            queries,
            plan=plan,
            phase=phase,
            sample=sample,
            instrument=instrument,
            since=since,
            until=until,
            start_fields=start_fields,
        )
        return Catalog(
            apply(self.client, found),
            directory=self.directory,
            log_dir=self.log_dir,
            data_dir=self.data_dir,
        )

    # -------------------------------------------------------------- closing
    def close(self) -> None:
        """Finish the subscriptions' work, then release the connection (the app's thread).

        An active `subscribe` is unsubscribed first: its queued documents are written and
        its runs' per-FOV views built (each up to its ``drain_timeout``), so a script that
        closes the catalog and exits does not cut them off at interpreter exit.
        """
        for subscription in list(self._subscriptions.values()):
            subscription.unsubscribe()  # (a no-op once unsubscribed)
        self._subscriptions.clear()
        context = getattr(self.client, "context", None)
        if context is not None:
            context.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
