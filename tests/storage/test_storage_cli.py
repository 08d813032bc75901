"""``faro-bluesky runs`` lists a catalog; ``serve`` refuses a key it can't use."""

from __future__ import annotations

from faro_bluesky.cli import main


def test_runs_lists_uid_plan_phases_status_and_frames(recorded, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["runs", str(recorded.catalog.path)]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if recorded.uid[:8] in line]
    for text in ("optogenetic_plan", "baseline, stim", "success", "20"):
        assert text in row
    assert "1 runs in" in out


def test_runs_and_serve_reject_bad_input(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert "not a catalog directory" in capsys.readouterr().out
    assert main(["serve", str(tmp_path), "--api-key", "has spaces!"]) == 2
    assert "letters and digits" in capsys.readouterr().out
