"""Qt tests run headless: the offscreen platform is chosen before Qt is imported."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# With a QApplication alive pymmcore-plus gives new cores Qt signals; at interpreter exit
# its atexit unload then emits into already-deleted Qt objects (an error log per device).
# The widgets never listen to the core, so these tests keep the core on psygnal.
os.environ.setdefault("PYMM_SIGNALS_BACKEND", "psygnal")

import pytest

from faro_bluesky.sim import sim_microscope


@pytest.fixture
def scope_factory(tmp_path):
    """Build a small simulated microscope *after* the test's own RunEngine (its loop)."""
    made = []

    def make():
        scope = sim_microscope(seed=3, data_dir=tmp_path / "data", image_shape=(128, 128))
        made.append(scope)
        return scope

    yield make
    for scope in made:
        scope.close()
