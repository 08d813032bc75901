"""``faro-bluesky shell`` under a pseudo-terminal: run a plan, Ctrl-C pauses, resume finishes."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pexpect

EXE = str(Path(sys.executable).parent / "faro-bluesky")
PROMPT = r"In \[\d+\]: "
REPO = Path(__file__).parents[1].resolve()


def send(child: pexpect.spawn, line: str) -> None:
    child.sendline(line)
    child.expect(PROMPT, timeout=120)


def test_shell_runs_a_plan_pauses_on_ctrl_c_and_resumes(tmp_path):
    child = pexpect.spawn(
        EXE,
        ["shell", "--simple-prompt", "--data", str(tmp_path / "data")],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 200),
        env={
            "PYTHONUNBUFFERED": "1",
            "TERM": "dumb",
            "PATH": "/usr/bin:/bin",
            "IPYTHONDIR": str(tmp_path / "ipython"),  # never the user's own history
        },
    )
    try:
        child.expect(r"profile\s+(\S+)", timeout=180)
        assert Path(child.match.group(1)) == REPO  # the packaged (here: repository) default
        child.expect(PROMPT, timeout=180)
        send(child, "seen = []")
        send(
            child,
            "RE.subscribe(lambda n, d: (seen.append(d['data']['visit-t']), "
            "print('EVENT', len(seen), flush=True)) if n == 'event' and "
            "'visit-t' in d['data'] else None)",
        )
        send(
            child,
            "phases = [Phase('a', interval=0.4, n_frames=8, channels=[Channel('miRFP', 10)])]",
        )
        child.sendline("r = RE(optogenetic_plan([(0, 0), (400, 0)], phases))")
        child.expect("EVENT 3", timeout=120)
        child.sendintr()  # Ctrl-C: pause at the next visit boundary
        child.expect("RunEngineInterrupted", timeout=60)
        child.expect(PROMPT)
        send(child, "print('STATE', RE.state, len(seen))")
        assert "STATE paused" in child.before
        paused_at = int(child.before.split("STATE paused")[1].split()[0])
        assert paused_at < 16
        send(child, "r = RE.resume()")
        send(child, "import collections; each = collections.Counter(seen)")
        send(child, "print('RESULT', r.exit_status, len(seen), each == {t: 2 for t in range(8)})")
        assert "RESULT success 16 True" in child.before  # every frame once, none lost
        send(child, "print('RUNS', len(catalog), catalog[-1].stop['exit_status'])")
        assert "RUNS 1 success" in child.before
        send(child, "%wa motors")  # bluesky's magic, on ophyd-async devices
        assert "stage-x" in child.before and "devices: focus (focus), stage (stage)" in child.before
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    with sqlite3.connect(tmp_path / "ipython" / "profile_default" / "history.sqlite") as db:
        history = [source for (source,) in db.execute("SELECT source FROM history")]
    assert "r = RE.resume()" in history


def test_shell_gui_docks_the_widget_and_shows_live_frames(tmp_path):
    child = pexpect.spawn(
        EXE,
        ["shell", "--gui", "--simple-prompt", "--data", str(tmp_path / "data")],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=180,
        dimensions=(40, 200),
        env={
            "PYTHONUNBUFFERED": "1",
            "TERM": "dumb",
            "PATH": "/usr/bin:/bin",
            "QT_QPA_PLATFORM": "offscreen",
            "HOME": str(tmp_path),
            "IPYTHONDIR": str(tmp_path / "ipython"),
        },
    )
    try:
        child.expect(PROMPT, timeout=240)
        send(
            child,
            "phases = [Phase('a', interval=0.2, n_frames=3, channels=[Channel('miRFP', 10)])]",
        )
        send(child, "r = RE(optogenetic_plan([(0, 0)], phases))")
        send(child, "from qtpy.QtWidgets import QApplication; QApplication.processEvents()")
        send(
            child,
            "print('GUI', r.exit_status, _live.shown > 0, 'camera' in viewer.layers, "
            "_dock.widget().__class__.__name__, _dock.widget().status.snapshot.visits_done)",
        )
        assert "GUI success True True ExperimentStatusWidget 3" in child.before
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
