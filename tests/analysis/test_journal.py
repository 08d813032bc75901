"""The tracks journal: each visit on disk when appended, read as its consolidated part would
be, a torn tail skipped, provisional rows replaced, nothing shown twice; in the analyzer, a
visit whose rows cannot be written is that visit's error."""

from __future__ import annotations

import errno
import logging
import os

import numpy as np
import pandas as pd
import pytest

from faro_bluesky.analysis import Analyzer, _journal, read_tracks
from faro_bluesky.analysis._journal import TracksJournal, encode, part_files, read_journal
from faro_bluesky.plans import Channel, Phase, optogenetic_plan
from faro_bluesky.storage import RunStore


def _visit(t: int, n: int = 3, *, lit: bool = False, ref: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(t)
    rows = pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "x": rng.random(n) * 100,
            "y": rng.random(n) * 100,
            "area": rng.integers(50, 90, n).astype(float),
            "cnr": rng.random(n),
            "particle": np.arange(n),
            "fov": 0,
            "t": t,
            "frame": t,
            "phase": "stim" if lit else "baseline",
            "time": 1000.0 + t,
            "scheduled": 1000.0 + t,
            "stim": lit,
        }
    )
    if lit:
        rows["lit"] = rng.random(n)
    if ref:
        rows["ref_mean"] = rng.random(n)
    return rows


def _folder(root):
    return root / "tracks" / "fov_0000"


class _Warnings:
    """Warnings of the journal's logger (the project runs pytest without its logging plugin)."""

    def __enter__(self) -> list[str]:
        self.seen: list[str] = []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.seen.append(record.getMessage())
        logging.getLogger(_journal.__name__).addHandler(self.handler)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(_journal.__name__).removeHandler(self.handler)


def test_each_visit_is_on_disk_when_appended_and_history_is_never_rewritten(tmp_path):
    journal = TracksJournal(tmp_path)
    before = b""
    for t in range(5):
        journal.append(0, t, _visit(t, lit=t % 2 == 1))
        (path,) = part_files(_folder(tmp_path))
        now = path.read_bytes()
        assert now.startswith(before) and len(now) > len(before)  # appended, not rewritten
        assert sorted(read_tracks(tmp_path)["t"].unique()) == list(range(t + 1))
        before = now
    journal.append(0, 5, _visit(5, n=0))  # an empty visit writes nothing
    assert path.read_bytes() == before
    journal.close()


def test_a_journal_reads_as_the_parquet_part_it_is_consolidated_into(tmp_path):
    visits = [_visit(0), _visit(1, lit=True), _visit(2, ref=True), _visit(3, lit=True)]
    journal = TracksJournal(tmp_path)
    for t, rows in enumerate(visits):
        journal.append(0, t, rows)
    killed = read_tracks(tmp_path)
    journal.finish()
    (part,) = part_files(_folder(tmp_path))
    assert part.name == "part-000000.parquet"
    assert not list(_folder(tmp_path).glob("*.journal"))
    finished = read_tracks(tmp_path)
    pd.testing.assert_frame_equal(killed, finished)  # same columns, order and dtypes
    expected = pd.concat(visits, ignore_index=True)
    assert list(finished.columns) == list(expected.columns)
    assert len(finished) == len(expected)


def test_a_torn_last_record_is_skipped_not_fatal(tmp_path):
    journal = TracksJournal(tmp_path)
    for t in range(3):
        journal.append(0, t, _visit(t))
    journal.close()
    (path,) = part_files(_folder(tmp_path))
    whole = path.read_bytes()
    good = read_journal(path)
    torn = encode(3, _visit(3))
    for cut in (1, 10, 20, 21, 22, len(torn) // 2, len(torn) - 1):
        path.write_bytes(whole + torn[:cut])
        with _Warnings() as seen:
            pd.testing.assert_frame_equal(read_journal(path), good)
        assert any("torn record" in m and path.name in m for m in seen), cut
    flipped = bytearray(torn)
    flipped[-5] ^= 0xFF  # a record whose bytes are not the ones written
    path.write_bytes(whole + bytes(flipped))
    with _Warnings() as seen:
        pd.testing.assert_frame_equal(read_journal(path), good)
    assert any("bad checksum" in m for m in seen)
    path.write_bytes(torn[:5])  # nothing intact at all: no rows, no error
    assert read_journal(path) is None
    assert RunStore(tmp_path).tracks().empty


def test_provisional_rows_are_replaced_by_the_later_record_of_their_visit(tmp_path):
    journal = TracksJournal(tmp_path)
    journal.append(0, 0, _visit(0))
    journal.append(0, 1, _visit(1), provisional=True)  # waits for its reference features
    journal.append(0, 2, _visit(2))
    assert len(read_tracks(tmp_path)) == 9  # killed now: the visit keeps its rows
    journal.append(0, 1, _visit(1, ref=True))
    tracks = read_tracks(tmp_path)
    assert len(tracks) == 9 and tracks.loc[tracks["t"] == 1, "ref_mean"].notna().all()
    journal.finish()
    pd.testing.assert_frame_equal(read_tracks(tmp_path), tracks)


def test_a_failed_write_leaves_the_journal_readable(tmp_path, monkeypatch):
    journal = TracksJournal(tmp_path)
    journal.append(0, 0, _visit(0))
    real_write = os.write

    def half_then_full_disk(fd, data):
        monkeypatch.setattr(os, "write", full_disk)
        return real_write(fd, bytes(data[: len(data) // 2]))

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        journal.append(0, 1, _visit(1))
    monkeypatch.setattr(os, "write", real_write)
    journal.append(0, 2, _visit(2))  # after the failed one: still readable
    assert sorted(read_tracks(tmp_path)["t"].unique()) == [0, 2]
    journal.close()


def test_a_new_journal_continues_after_the_parts_already_there(tmp_path):
    first = TracksJournal(tmp_path)
    first.append(0, 0, _visit(0))
    first.finish()
    killed = TracksJournal(tmp_path)  # a later run into the same output, then killed
    killed.append(0, 1, _visit(1))
    killed.close()
    with (_folder(tmp_path) / "part-000001.journal").open("ab") as f:
        f.write(encode(2, _visit(2))[:30])  # torn by the kill
    again = TracksJournal(tmp_path)
    again.append(0, 3, _visit(3))
    again.close()
    names = [p.name for p in part_files(_folder(tmp_path))]
    assert names == ["part-000000.parquet", "part-000001.journal", "part-000002.journal"]
    assert sorted(read_tracks(tmp_path)["t"].unique()) == [0, 1, 3]


def test_a_kill_during_consolidation_shows_every_row_once(tmp_path):
    journal = TracksJournal(tmp_path)
    for t in range(3):
        journal.append(0, t, _visit(t))
    journal.close()
    (path,) = part_files(_folder(tmp_path))
    table = read_tracks(tmp_path)
    read_journal(path).to_parquet(path.with_suffix(".parquet"), index=False)
    # killed after the rename, before deleting the journal: the parquet part wins
    assert [p.suffix for p in part_files(_folder(tmp_path))] == [".parquet"]
    pd.testing.assert_frame_equal(read_tracks(tmp_path), table)
    pd.testing.assert_frame_equal(RunStore(tmp_path).tracks(), table)


def test_a_visit_whose_rows_cannot_be_written_is_its_error_not_the_runs(
    RE, scope, tmp_path, monkeypatch
):
    real_append = TracksJournal.append

    def disk_full_at_t1(self, fov, t, rows, **kw):
        if fov == 0 and t == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(self, fov, t, rows, **kw)

    monkeypatch.setattr(TracksJournal, "append", disk_full_at_t1)
    analyzer = Analyzer(output=tmp_path / "out")
    phase = Phase("p", interval=0.05, n_frames=3, channels=[Channel("miRFP", 5)])
    result = RE(
        optogenetic_plan([(0.0, 0.0), (300.0, 0.0)], [phase], microscope=scope, analyzer=analyzer)
    )
    assert result.exit_status == "success"
    tracks = analyzer.tracks()
    analyzer.close()
    summaries = {(s.fov, s.t): s for s in analyzer.summaries}
    assert len(summaries) == 6  # every visit summarised, the failed one with its error
    assert "storage" in summaries[(0, 1)].error and "No space" in summaries[(0, 1)].error
    assert not any(s.error for key, s in summaries.items() if key != (0, 1))
    written = set(tracks.groupby(["fov", "t"]).size().index)
    assert written == {k for k, s in summaries.items() if s.n_cells and k != (0, 1)}
    # a clean finish: every FOV's journal consolidated into its parquet part
    parts = list((tmp_path / "out" / "tracks").rglob("part-*"))
    assert parts and all(p.suffix == ".parquet" for p in parts)
