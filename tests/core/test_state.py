"""State file, secrets and the lock against two writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wizard.state import LockedError, StateError, StateStore, list_deployments

ROOT = Path(__file__).resolve().parents[2]


def test_state_is_0600_atomic_and_versioned(state_dir):
    s = StateStore("d1")
    s.host("mongo1", "mongo").public_ip = "198.18.0.10"
    s.record_resource("droplet", "123", "d1-mongo1", {"host": "mongo1"})
    p = state_dir / "d1" / "state.json"
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    data = json.loads(p.read_text())
    assert data["schema_version"] == 1 and data["resources"][0]["id"] == "123"
    assert not [f for f in p.parent.iterdir() if f.name.startswith(".state.json.")]   # no temp files left
    again = StateStore("d1")
    assert again.state.hosts["mongo1"].public_ip == "198.18.0.10"
    assert [d.name for d in list_deployments()] == ["d1"]


def test_record_resource_is_idempotent(state_dir):
    s = StateStore("d1")
    s.record_resource("droplet", "1", "a")
    s.record_resource("droplet", "1", "a", {"status": "active"})
    assert len(s.state.resources) == 1 and s.state.resources[0].data["status"] == "active"


def test_unreadable_or_newer_state_is_a_clear_error(state_dir):
    d = state_dir / "d1"
    d.mkdir(parents=True)
    (d / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="unreadable state"):
        StateStore("d1")
    (d / "state.json").write_text(json.dumps({"schema_version": 99, "deployment": "d1"}))
    with pytest.raises(StateError, match="schema version 99"):
        StateStore("d1")


def test_second_writer_is_refused(state_dir):
    code = ("import sys,time; sys.path.insert(0, %r)\n"
            "from wizard.state import StateStore\n"
            "s = StateStore('d1').lock(); print('locked', flush=True); time.sleep(30)\n") % str(ROOT)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ))
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=r"in use by pid \d+"):
            StateStore("d1").lock()
    finally:
        p.kill()
        p.wait()
    # the holder died without unlocking: the lock is taken over, with a notice
    s = StateStore("d1").lock()
    assert "stale lock" in s.notice and str(p.pid) in s.notice
    s.unlock()
    s2 = StateStore("d1").lock()
    assert s2.notice == ""          # a clean unlock leaves no note behind
    s2.unlock()


def test_secrets_file(state_dir):
    s = StateStore("d1")
    pw = s.secrets.get_or_create("mongo_admin")
    assert len(pw) >= 20 and s.secrets.get_or_create("mongo_admin") == pw
    assert oct(s.secrets.path.stat().st_mode & 0o777) == "0o600"
    assert StateStore("d1").secrets.get("mongo_admin") == pw
    s.secrets.delete("mongo_admin")
    assert StateStore("d1").secrets.get("mongo_admin") is None


def test_admin_password_is_shown_once(state_dir, tmp_path, client_key):
    from wizard.deploy import Deployment
    from wizard.plan import plan_from_dict

    from .conftest import answers

    plan = plan_from_dict(answers(tmp_path, client_key))
    d = Deployment(plan, StateStore(plan.name))
    assert d.admin_credentials_once() is None              # nothing generated yet
    pw = d.store.secrets.get_or_create("rocketchat_admin_password")
    assert d.admin_credentials_once() == ("admin", pw)
    assert Deployment(plan, StateStore(plan.name)).admin_credentials_once() is None
    assert pw not in (state_dir / plan.name / "state.json").read_text()
