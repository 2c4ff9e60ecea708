"""Fixtures for the Textual screens: a private state folder, an SSH key pair, the demo app."""

from __future__ import annotations

from pathlib import Path

import pytest

from screens.demo import DemoDeployment, FixedClock, demo_app


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    monkeypatch.setenv("ROCKET_WIZARD_STATE_DIR", str(root))
    return root


@pytest.fixture
def ssh_key(tmp_path) -> Path:
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    key.with_name("id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemo ops@example\n")
    return key


@pytest.fixture
def made() -> list[DemoDeployment]:
    """Every DemoDeployment the app made, to look inside after the run."""
    return []


@pytest.fixture
def app_factory(state_dir, made):
    def make(**kw):
        demo_kw = kw.pop("demo", {})

        def factory(plan):
            d = DemoDeployment(plan, **{"delay": 0, "elapsed": 2.0, **demo_kw})
            made.append(d)
            return d
        kw.setdefault("make_deployment", factory)
        kw.setdefault("clock", FixedClock())
        return demo_app(**kw)
    return make
