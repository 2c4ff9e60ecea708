"""The step engine over real SSH (an in-process asyncssh server running /bin/sh)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from wizard import events as ev
from wizard.engine import Runner, facts_script, parse_facts
from wizard.plan import plan_from_dict
from wizard.ssh import SSHError
from wizard.state import StateStore

from . import steps_fixture as sf
from .conftest import answers

ROOT = Path(__file__).resolve().parents[2]


def make(tmp_path, ssh_server, client_key, hosts=("mongo1", "web1"), host_key=None):
    plan = plan_from_dict(answers(tmp_path, client_key, mongo_members=1))
    store = StateStore(plan.name)
    for name in hosts:
        rec = store.host(name, "mongo" if name.startswith("mongo") else "web")
        rec.public_ip, rec.ssh_port = ssh_server.host, ssh_server.port
        rec.host_key = host_key or ssh_server.host_public
        rec.ready = True
    store.save()
    return plan, store


def runner(plan, store, tmp_path, steps, events):
    r = Runner(plan, store, [sf.phase(*steps)], emit=events.append)
    r._test_dir = str(tmp_path / "hosts")
    return r


def test_facts_script_round_trip():
    out = subprocess.run(["sh", "-c", facts_script({"a": "echo 1; echo 2", "b": "exit 4", "c": "printf 'no newline'"})],
                         capture_output=True, text=True).stdout
    facts, rcs = parse_facts(out)
    assert facts == {"a": "1\n2", "b": "", "c": "no newline"}
    assert rcs == {"a": 0, "b": 4, "c": 0}


async def test_converge_then_noop_costs_one_round_trip_per_host(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key)
    steps = [sf.Touch("a", "1"), sf.Touch("b", "2"), sf.Touch("c", "3")]
    events: list = []
    first = await runner(plan, store, tmp_path, steps, events).run()
    assert first.ok and first.changed == 6
    assert (tmp_path / "hosts/web1/b").read_text() == "2"
    assert oct((tmp_path / "hosts/web1/b").stat().st_mode & 0o777) == "0o600"

    events.clear()
    second = await runner(plan, store, tmp_path, steps, events).run()
    assert second.ok and second.changed == 0
    assert second.round_trips == {"mongo1": 1, "web1": 1}
    oks = [e for e in events if isinstance(e, ev.StepFinished)]
    assert {e.status for e in oks} == {"ok"}
    assert all("already holds" in e.reason for e in oks)

    # a setting changed by hand is put back by the next run
    (tmp_path / "hosts/mongo1/a").write_text("tampered")
    third = await runner(plan, store, tmp_path, steps, events).run()
    assert third.changed == 1 and (tmp_path / "hosts/mongo1/a").read_text() == "1"


async def test_dry_run_changes_nothing(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key)
    events: list = []
    res = await runner(plan, store, tmp_path, [sf.Touch("a")], events).run(dry_run=True)
    assert res.changed == 0 and len(res.changes) == 2
    assert not (tmp_path / "hosts").exists()
    assert store.state.runs == []
    assert any(isinstance(e, ev.StepFinished) and e.reason.startswith("would ") for e in events)


async def test_failure_reports_command_and_output_then_resume_continues(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key)
    steps = [sf.Append("one"), sf.Fail(), sf.Append("two")]
    events: list = []
    res = await runner(plan, store, tmp_path, steps, events).run()
    assert not res.ok and res.failed == 2
    failed = [e for e in events if isinstance(e, ev.StepFinished) and e.status == "failed"]
    assert failed and "it broke" in failed[0].output and "exit 3" in failed[0].command
    assert store.state.last_run.status == "failed"
    assert not (tmp_path / "hosts/web1/journal").read_text().count("two")

    for h in ("mongo1", "web1"):
        (tmp_path / "hosts" / h / "flag").touch()
    events.clear()
    res = await runner(plan, store, tmp_path, steps, events).run()
    assert res.ok
    journal = (tmp_path / "hosts/web1/journal").read_text().split()
    assert journal == ["one", "two"]          # "one" was done: not repeated on resume
    resumed = [e for e in events if isinstance(e, ev.RunStarted)]
    assert resumed[0].resumed
    assert any("done before the interruption" in e.reason for e in events if isinstance(e, ev.StepFinished))


async def test_cancel_leaves_state_consistent(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1",))

    class Slow(sf.Append):
        def check(self, ctx):
            ch = super().check(ctx)
            ch.ops.append(sf.Cmd("sleep 5"))
            return ch

    events: list = []
    task = asyncio.ensure_future(runner(plan, store, tmp_path, [sf.Append("a"), Slow("b")], events).run())
    while not any(isinstance(e, ev.StepStarted) and e.step == "b" for e in events):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    again = StateStore(plan.name)          # what a new process would read
    run = again.state.last_run
    assert run.status == "interrupted"
    assert run.steps["a@mongo1"].status == "changed"
    assert run.steps["b@mongo1"].status == "interrupted"


async def test_secrets_never_reach_logs_or_state(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key)
    events: list = []
    res = await runner(plan, store, tmp_path, [sf.Secretive()], events).run()
    assert res.ok
    pw = store.secrets.get("test_pw")
    text = "\n".join(repr(e) for e in events)
    assert "using ***" in text and pw not in text
    assert pw not in (state_dir / plan.name / "state.json").read_text()
    assert (tmp_path / "hosts/mongo1/pw").read_text() == pw
    assert oct((state_dir / plan.name / "secrets.toml").stat().st_mode & 0o777) == "0o600"


async def test_container_detection_feeds_skips(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1",))
    events: list = []
    await runner(plan, store, tmp_path, [sf.OnlyInVM()], events).run()
    fin = [e for e in events if isinstance(e, ev.StepFinished)][0]
    virt = subprocess.run(["sh", "-c", "systemd-detect-virt -c 2>/dev/null || true"], capture_output=True,
                          text=True).stdout.strip()
    assert fin.status == ("skipped" if virt not in ("", "none") else "ok")


async def test_wrong_host_key_is_refused_with_a_clear_message(tmp_path, state_dir, ssh_server, client_key):
    from wizard import hostkeys
    _, other = hostkeys.generate()
    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1",), host_key=other)
    events: list = []
    res = await runner(plan, store, tmp_path, [sf.Touch("a")], events).run()
    assert not res.ok
    fail = [e for e in events if isinstance(e, ev.StepFinished)][0]
    assert "host key does not match" in fail.reason
    assert not (tmp_path / "hosts").exists()


def test_kill_at_every_step_boundary_then_rerun(tmp_path, state_dir, ssh_server, client_key):
    """SIGKILL the applying process at each step boundary; every rerun resumes cleanly.

    One host, so that a boundary is a boundary: with two hosts in parallel, a kill at
    one host's boundary lands mid-step on the other, whose step then rightly runs
    again (that is why every real step's check is idempotent).
    """
    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1",))
    child = Path(__file__).with_name("apply_child.py")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    boundaries = 0
    while True:
        boundaries += 1
        r = subprocess.run([sys.executable, str(child), plan.name, str(tmp_path), str(client_key), str(boundaries)],
                           env=env, capture_output=True, text=True, timeout=120)
        state = json.loads((state_dir / plan.name / "state.json").read_text())   # readable every time
        assert state["schema_version"] == 1
        if r.returncode == 0:
            break
        assert r.returncode == -signal.SIGKILL, r.stderr
    assert boundaries > 4
    for h in ("mongo1",):
        journal = (tmp_path / "hosts" / h / "journal").read_text().split()
        assert journal == ["one", "two", "three"], journal     # no side effect repeated


async def test_a_dropped_connection_is_reopened(tmp_path, state_dir, ssh_server, client_key):
    """sshd restarted by an upgrade, or a keepalive lost: the next command reconnects."""
    from wizard.engine import Ctx

    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1",))
    r = runner(plan, store, tmp_path, [sf.Touch("a")], [])
    ctx = Ctx(r, store.state.hosts["mongo1"], "t")
    try:
        await r.gather(ctx, [sf.Touch("a")])
        assert ctx.facts["file_a"] == "MISSING"
        ctx.conn._conn.close()                 # the peer went away
        await ctx.conn._conn.wait_closed()
        await r.gather(ctx, [sf.Touch("a")])
        assert ctx.facts["file_a"] == "MISSING"
        assert r.pool.round_trips()["mongo1"] == 2
    finally:
        await r.pool.close()
