from __future__ import annotations

import os
from pathlib import Path

from tests.keys import operator_key
import pytest

from . import sshserver


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    return operator_key(tmp_path)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("ROCKET_WIZARD_STATE_DIR", str(d))
    return d


@pytest.fixture
def ssh_server(tmp_path: Path, client_key: Path):
    info, stop = sshserver.start(tmp_path, (client_key.with_name("id_ed25519.pub")).read_text().strip())
    info.client_key = client_key
    yield info
    stop()


def answers(tmp_path: Path, client_key: Path | None = None, **over) -> dict:
    data = {
        "name": "t1", "provider": "lab", "domain": "chat.lab.test", "admin_email": "ops@lab.test",
        "ssh_key": str(client_key) if client_key else str(tmp_path / "id_ed25519"),
    }
    data.update(over)
    return data
