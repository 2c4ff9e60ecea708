"""SVG snapshots of every screen at 80x24 (two also larger), from the same scenes
scripts/screenshots.py uses. Update after a deliberate change with
    pytest tests/tui/test_snapshots.py --snapshot-update
Clocks are fixed (FixedClock), runs are scripted (DemoDeployment) and cursors do
not blink, so a difference is a real change."""

from __future__ import annotations

import pytest

from screens.demo import SCENES, demo_app, prepare_state


@pytest.mark.parametrize("name", list(SCENES))
def test_screen_snapshot(name, snap_compare, monkeypatch):
    scene, size = SCENES[name]
    monkeypatch.setenv("ROCKET_WIZARD_STATE_DIR", "")     # restored after; prepare_state sets it
    prepare_state()
    assert snap_compare(demo_app(), run_before=scene, terminal_size=size)
