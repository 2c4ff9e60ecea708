"""The mongod stand-in on loopback: what the wizard and Rocket.Chat rely on, checked with pymongo."""
from __future__ import annotations

import os
import subprocess
import time

import pymongo
import pytest
from pymongo.errors import OperationFailure

from mongod_loopback import STANDIN, Instance, new_key, python_for_standin

ADDRS = ["127.0.48.1", "127.0.48.2", "127.0.48.3"]
PORT = 27417


def client(inst, **kw):
    kw.setdefault("serverSelectionTimeoutMS", 5000)
    return pymongo.MongoClient(inst.addr, inst.port, directConnection=True, **kw)


def wait_for(pred, timeout=30.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def caught_up(insts):
    """Every running member has applied the primary's last write."""
    optimes = [client(i).admin.command("hello")["lastWrite"]["opTime"] for i in insts if i.proc is not None]
    return all(o == optimes[0] for o in optimes)


def primary_of(insts):
    for i in insts:
        if i.proc is None:
            continue
        try:
            if client(i, serverSelectionTimeoutMS=1000).admin.command("hello").get("isWritablePrimary"):
                return i
        except pymongo.errors.PyMongoError:
            pass
    return None


# --- startup refusals ----------------------------------------------------------------------

def _run_once(tmp_path, key_mode=0o400, missing=False):
    inst = Instance(tmp_path, "k", "127.0.48.9", PORT, new_key())
    if missing:
        inst.keyfile.unlink()
    else:
        inst.keyfile.chmod(key_mode)
    p = subprocess.run(python_for_standin() + [str(STANDIN), "--config", str(inst.conf)],
                       capture_output=True, text=True, timeout=20)
    return p, inst.log.read_text()


def test_refuses_group_readable_keyfile(tmp_path):
    p, log = _run_once(tmp_path, 0o440)
    assert p.returncode == 1
    assert f"permissions on {tmp_path / 'k' / 'keyfile'} are too open" in log
    assert "Read security file failed" in p.stderr


def test_refuses_missing_keyfile(tmp_path):
    p, log = _run_once(tmp_path, missing=True)
    assert p.returncode == 1
    assert "No such file or directory" in log


def test_refuses_unknown_option(tmp_path):
    inst = Instance(tmp_path, "u", "127.0.48.9", PORT, None, auth=False)
    inst.conf.write_text(inst.conf.read_text() + "storage2:\n  journal: true\n")
    p = subprocess.run(python_for_standin() + [str(STANDIN), "--config", str(inst.conf)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "Unrecognized option: storage2.journal" in p.stderr


def test_binds_only_bind_ip(tmp_path):
    inst = Instance(tmp_path, "b", "127.0.48.9", PORT, None, replset=None, auth=False).start()
    try:
        import socket
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", PORT), 0.5)
        socket.create_connection(("127.0.48.9", PORT), 0.5).close()
    finally:
        inst.stop()


# --- a three-member set ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def rs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs")
    key = new_key()
    insts = [Instance(root, f"m{i + 1}", a, PORT, key) for i, a in enumerate(ADDRS)]
    for i in insts:
        i.start()
    yield insts
    for i in insts:
        i.stop()


def test_localhost_exception_and_initiate(rs):
    m1 = rs[0]
    c = client(m1)
    h = c.admin.command("hello")
    assert "setName" not in h and h["isWritablePrimary"] is False
    with pytest.raises(OperationFailure) as e:
        c.admin.command("replSetGetStatus")
    assert e.value.code == 13
    cfg = {"_id": "rs0", "members": [{"_id": n, "host": i.host} for n, i in enumerate(rs)]}
    c.admin.command("replSetInitiate", cfg)
    with pytest.raises(OperationFailure) as e:
        c.admin.command("replSetInitiate", cfg)
    assert e.value.code == 23
    p = wait_for(lambda: primary_of(rs), 30)
    pc = client(p)
    pc.admin.command("createUser", "admin", pwd="adminpw", roles=["root"])
    with pytest.raises(OperationFailure) as e:      # the exception closes after the first user
        pc.admin.command("createUser", "second", pwd="x", roles=["root"])
    assert e.value.code == 13
    a = client(p, username="admin", password="adminpw", authMechanism="SCRAM-SHA-256")
    st = a.admin.command("replSetGetStatus")
    wait_for(lambda: sorted(m["stateStr"] for m in client(p, username="admin", password="adminpw")
                            .admin.command("replSetGetStatus")["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"], 20)
    assert st["set"] == "rs0"
    wait_for(lambda: caught_up(rs), 10)


def test_unauthenticated_refused_everywhere(rs):
    for i in rs:
        with pytest.raises(OperationFailure) as e:
            client(i).rocketchat.messages.find_one({}, **{})
        assert e.value.code in (13, 13435)
        with pytest.raises(OperationFailure) as e:
            client(i).admin.command("createUser", "late", pwd="x", roles=["root"])
        assert e.value.code == 13


def test_users_replicated_and_writes_majority(rs):
    p = primary_of(rs)
    a = client(p, username="admin", password="adminpw")
    a.rocketchat.command("createUser", "rocketchat", pwd="rcpw", roles=[{"role": "readWrite", "db": "rocketchat"}])
    rc = client(p, username="rocketchat", password="rcpw", authSource="rocketchat")
    rc.rocketchat.messages.insert_many([{"n": i} for i in range(50)])
    with pytest.raises(OperationFailure) as e:
        rc.admin.command("replSetGetStatus")
    assert e.value.code == 13
    for i in rs:
        if i is p:
            continue
        s = client(i, username="rocketchat", password="rcpw", authSource="rocketchat",
                   readPreference="secondaryPreferred")
        wait_for(lambda: s.rocketchat.messages.count_documents({}) == 50, 10)
        with pytest.raises(pymongo.errors.NotPrimaryError) as e:
            client(i, username="rocketchat", password="rcpw", authSource="rocketchat").rocketchat.messages.insert_one({})
        assert e.value.details["code"] == 10107


def test_replset_client_discovers_primary(rs):
    seeds = ",".join(i.host for i in rs)
    c = pymongo.MongoClient(f"mongodb://rocketchat:rcpw@{seeds}/rocketchat?replicaSet=rs0&authSource=rocketchat",
                            serverSelectionTimeoutMS=10000)
    c.rocketchat.things.insert_one({"a": 1})
    assert c.rocketchat.things.find_one({"a": 1})["a"] == 1


def test_failover_elects_new_primary_and_keeps_data(rs):
    old = primary_of(rs)
    old.stop()
    t0 = time.monotonic()
    new = wait_for(lambda: primary_of(rs), 30, 0.25)
    elapsed = time.monotonic() - t0
    print(f"failover took {elapsed:.1f} s")
    assert new is not old
    a = client(new, username="admin", password="adminpw")
    st = a.admin.command("replSetGetStatus")
    down = [m for m in st["members"] if m["name"] == old.host][0]
    wait_for(lambda: [m for m in client(new, username="admin", password="adminpw")
                      .admin.command("replSetGetStatus")["members"] if m["name"] == old.host][0]["health"] == 0, 15)
    rc = client(new, username="rocketchat", password="rcpw", authSource="rocketchat")
    assert rc.rocketchat.messages.count_documents({}) == 50
    rc.rocketchat.messages.insert_one({"n": "after failover"})
    old.start()
    wait_for(lambda: client(old, username="rocketchat", password="rcpw", authSource="rocketchat",
                            readPreference="secondaryPreferred").rocketchat.messages.count_documents({}) == 51, 20)
    assert primary_of(rs) is new
    assert down["name"] == old.host


def test_initiate_refuses_member_with_other_keyfile(tmp_path):
    good = new_key()
    a = Instance(tmp_path, "a", "127.0.48.4", PORT, good).start()
    b = Instance(tmp_path, "b", "127.0.48.5", PORT, new_key()).start()
    try:
        cfg = {"_id": "rs0", "members": [{"_id": 0, "host": a.host}, {"_id": 1, "host": b.host},
                                         {"_id": 2, "host": f"127.0.48.6:{PORT}"}]}
        with pytest.raises(OperationFailure) as e:
            client(a).admin.command("replSetInitiate", cfg)
        assert e.value.code == 74
        msg = e.value.details["errmsg"]
        assert "quorum check failed" in msg and "Authentication failed" in msg
        assert "Connection refused" in msg
        assert "setName" not in client(a).admin.command("hello")
    finally:
        a.stop()
        b.stop()


def test_single_member_set_and_restart_keeps_state(tmp_path):
    a = Instance(tmp_path, "s", "127.0.48.7", PORT, new_key()).start()
    try:
        c = client(a)
        c.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": a.host}]})
        wait_for(lambda: client(a).admin.command("hello").get("isWritablePrimary"), 10)
        c.admin.command("createUser", "admin", pwd="pw", roles=["root"])
        client(a, username="admin", password="pw").x.y.insert_one({"k": 1})
        a.stop()
        a.start()
        wait_for(lambda: client(a).admin.command("hello").get("isWritablePrimary"), 10)
        assert client(a, username="admin", password="pw").x.y.find_one({"k": 1})
        with pytest.raises(OperationFailure):
            client(a).admin.command("createUser", "again", pwd="pw", roles=["root"])
    finally:
        a.stop()


def _node_driver():
    import glob
    import shutil
    if not shutil.which("node"):
        return None
    found = sorted(glob.glob(os.path.expanduser("~/.cache/rocket-wizard/standins/server-modules/*/node_modules/mongodb")))
    return found[-1] if found else None


def test_node_mongodb_driver_against_replica_set(rs):
    """The npm `mongodb` driver (as the Rocket.Chat stand-in uses it) discovers the set, authenticates
    with SCRAM-SHA-256 and does its CRUD through the primary."""
    drv = _node_driver()
    if drv is None:
        pytest.skip("node or the npm mongodb driver (fetched by the Rocket.Chat stand-in build) is missing")
    p = primary_of(rs)
    client(p, username="admin", password="adminpw").rocketchat.command(
        "createUser", "nodeuser", pwd="nodepw", roles=[{"role": "readWrite", "db": "rocketchat"}])
    seeds = ",".join(i.host for i in rs if i.proc is not None)
    url = f"mongodb://nodeuser:nodepw@{seeds}/rocketchat?replicaSet=rs0&authSource=rocketchat"
    script = os.path.join(os.path.dirname(__file__), "node_driver_check.js")
    r = subprocess.run(["node", script], env={"DRIVER": drv, "URL": url, "PATH": os.environ.get("PATH", "")},
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    assert "dup 11000" in r.stdout


def test_recipe_probe_reads_a_secondary(rs):
    """recipes/templates/mongo_probe.py (stdlib only, runs on the hosts) sees hello, logins,
    members and users from a SECONDARY too: usersInfo goes with a read preference."""
    import json
    import pathlib
    probe = (pathlib.Path(__file__).resolve().parents[2] / "recipes/templates/mongo_probe.py").read_text()
    sec = next(i for i in rs if i.proc is not None and client(i).admin.command("hello").get("secondary"))
    code = (f'CREDS = [["admin", "admin", "adminpw"], ["rocketchat", "rocketchat", "rcpw"]]\n'
            f'PORT = {PORT}\n' + probe.replace('("127.0.0.1", port)', f'("{sec.addr}", port)'))
    out = json.loads(subprocess.run(["python3", "-"], input=code, capture_output=True, text=True,
                                    timeout=30).stdout)
    assert out["hello"]["setName"] == "rs0" and out["hello"]["secondary"] is True
    assert out["auth"] == {"admin@admin": "ok", "rocketchat@rocketchat": "ok"}
    assert "rocketchat@rocketchat readWrite@rocketchat" in out["users"]
    assert sorted(m["state"] for m in out["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"]
