"""The MongoDB phase on lab hosts (prefix rm, 198.18.48.0/23), after the hardening phase.

Three mongo hosts, one web host (a peer) and one outsider on the private network. The
stand-in `mongodb-org` packages are built from tests/standins/mongod and served by the
lab mirror as a signed apt repository laid out like repo.mongodb.org. Checks: the set
forms; a rerun changes nothing; an unauthenticated client is refused; the MongoDB port
is closed to a non-peer and to the public side; stopping the primary's mongod elects a
new primary and wizard.mongo.member_status shows it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("RW_MONGO_LAB_PREFIX", "rm")
SUBNET = os.environ.get("RW_MONGO_LAB_SUBNET", "198.18.48.0/23")
VERSION = os.environ.get("RW_MONGO_STANDIN_VERSION", "8.0.4")
PLANNED = ["mongo1", "mongo2", "mongo3", "web1"]
OUTSIDER = "other1"

pytestmark = pytest.mark.lab


def say(line: str) -> None:
    print(f"[mongodb] {line}", flush=True)


def _why_no_lab() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("dpkg-deb", "apt-ftparchive", "gpg"):
        if not shutil.which(tool):
            return f"{tool} missing (apt-get install -y dpkg-dev apt-utils gnupg)"
    return None


def make_key(folder: Path) -> Path:
    from tests.keys import operator_key
    return operator_key(folder, "rw-mongodb-test")


class Cluster:
    def __init__(self, lab, plan, store, hosts, tmp):
        self.lab, self.plan, self.store, self.hosts, self.tmp = lab, plan, store, hosts, tmp
        self.opened: list[float] = []

    def ssh_budget(self):
        """Each Runner opens a new SSH connection per host. The hardening's `ufw limit 22/tcp`
        REJECTs the 6th new connection from one address within 30 s (brute-force guard), so
        the tests, like an operator, keep below 5 per 30 s."""
        while True:
            now = time.monotonic()
            self.opened = [t for t in self.opened if now - t < 31]
            if len(self.opened) < 4:
                self.opened.append(now)
                return
            time.sleep(31 - (now - self.opened[0]))

    def run(self, phases):
        from wizard.engine import Runner
        self.ssh_budget()
        events: list = []
        res = asyncio.run(Runner(self.plan, self.store, phases, emit=events.append).run())
        return res, events

    def sh(self, name, script, timeout=60):
        return self.lab.exec(name, ["sh", "-c", script], timeout=timeout)

    def members(self):
        ok, last = self.poll_members(lambda ms: True, 0)
        return last

    def poll_members(self, pred, timeout, every=2.0):
        """member_status until pred(members) holds, over ONE SSH connection per host: the
        hardening's `ufw limit 22/tcp` rejects a 7th new connection within 30 s."""
        from wizard import mongo
        from wizard.engine import Runner

        self.ssh_budget()

        async def go():
            r = Runner(self.plan, self.store, [])
            try:
                t0 = time.monotonic()
                while True:
                    last = await mongo.member_status(self.plan, r.inventory, self.store.secrets, r.connection)
                    if pred(last):
                        return True, last
                    if time.monotonic() - t0 > timeout:
                        return False, last
                    await asyncio.sleep(every)
            finally:
                await r.pool.close()
        return asyncio.run(go())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = _why_no_lab()
    if why:
        pytest.skip(why)
    from wizard import cloudinit, hostkeys
    from wizard.lab.lab import Lab
    from wizard.lab.mirror import build_apt_repo
    from wizard.plan import Plan
    from wizard.state import StateStore

    tmp = tmp_path_factory.mktemp("rm-lab")
    os.environ["ROCKET_WIZARD_STATE_DIR"] = str(tmp / "state")
    # the stand-in packages, in a signed repository laid out like repo.mongodb.org/apt/debian
    debs = subprocess.run([str(ROOT / "tests/standins/mongod/build-deb.sh"), VERSION, str(tmp / "debs")],
                          check=True, capture_output=True, text=True).stdout.split()
    series = ".".join(VERSION.split(".")[:2])
    build_apt_repo(tmp / "mirror" / "mongodb-apt", f"bookworm/mongodb-org/{series}", "main", "amd64", debs,
                   tmp / "gpg")
    key = make_key(tmp)
    pub = key.with_name(key.name + ".pub").read_text().strip()
    lab = Lab(prefix=PREFIX, subnet=SUBNET)
    t0 = time.monotonic()
    lab.up()
    for h in lab.hosts():
        lab.destroy_host(h.name)
    url = lab.start_mirror(tmp / "mirror")
    names = PLANNED + [OUTSIDER]
    keys = {n: hostkeys.generate() for n in names}
    from wizard.lab.errors import LabError
    for attempt in (1, 2):
        try:
            booted = lab.boot_hosts(names, user_data_for=lambda n: cloudinit.user_data(*keys[n]),
                                    meta_data_for=lambda n: {"local-hostname": n, "public-keys": [pub]})
            break
        except LabError as e:
            # seen under load on 2 cores: "stopped while booting (nspawn exit None)"; boot once more
            say(f"boot attempt {attempt} failed: {str(e).splitlines()[0]}")
            if attempt == 2:
                raise
            for h in lab.hosts():
                lab.destroy_host(h.name)
    for n in names:
        lab.wait_cloud_init(n)
    say(f"lab {PREFIX}: {len(names)} hosts booted in {time.monotonic() - t0:.1f} s; mirror {url}")
    plan = Plan.model_validate(dict(
        name="rm-mongodb", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
        ssh_key=str(key), image="debian-12-x64", mongodb_version=series, mongo_members=3, app_hosts=1,
        mirrors={"mongodb_apt": f"{url}/mongodb-apt"}))
    store = StateStore(plan.name)
    hosts = {}
    for h in booted:
        hosts[h.name] = h
        if h.name in PLANNED:
            rec = store.host(h.name, "web" if h.name.startswith("web") else "mongo")
            rec.public_ip, rec.private_ip = h.public_ip, h.private_ip
            rec.host_key, rec.ssh_user, rec.ready = keys[h.name][1], "root", True
    store.save()
    c = Cluster(lab, plan, store, hosts, tmp)
    yield c
    if not os.environ.get("RW_KEEP_LAB"):
        lab.down()


@pytest.fixture(scope="module")
def formed(cluster):
    from recipes import hardening, mongodb
    t0 = time.monotonic()
    res0, _ = cluster.run([hardening.PHASE])
    say(f"hardening: ok={res0.ok} changed={res0.changed} in {time.monotonic() - t0:.1f} s")
    assert res0.ok, res0.failures
    t0 = time.monotonic()
    res1, ev1 = cluster.run([mongodb.PHASE])
    say(f"first run (mongodb): ok={res1.ok} changed={res1.changed} in {time.monotonic() - t0:.1f} s, "
        f"round trips {res1.round_trips}")
    for e in ev1:
        if type(e).__name__ == "Progress":
            say(f"  progress {e}")
    assert res1.ok, res1.failures
    t0 = time.monotonic()
    res2, ev2 = cluster.run([mongodb.PHASE])
    say(f"rerun (mongodb): changed={res2.changed} in {time.monotonic() - t0:.1f} s, round trips {res2.round_trips}")
    return cluster, res1, res2


def test_replica_set_forms(formed):
    c, res1, _ = formed
    mongo_changes = [(h, s) for h, s, _ in res1.changes if s.startswith("mongo.")]
    assert ("mongo1", "mongo.replset") in mongo_changes
    # Right after forming, a secondary may not have applied an entry yet (no optime, so
    # no lag to report): give the heartbeats a little while, as an operator watching would.
    settled, members = c.poll_members(
        lambda ms: all(m.health == 1 and m.lag_s is not None and m.lag_s < 30 for m in ms), 60)
    states = sorted(m.state for m in members)
    assert states == ["PRIMARY", "SECONDARY", "SECONDARY"], members
    assert settled, members
    conf = c.sh("mongo2", "cat /etc/mongod.conf; stat -c '%U:%G %a' /etc/mongodb/keyfile").stdout
    assert f"bindIp: 127.0.0.1,{c.hosts['mongo2'].private_ip}" in conf
    assert "mongodb:mongodb 400" in conf


def test_rerun_changes_nothing(formed):
    _, _, res2 = formed
    assert res2.ok and res2.changed == 0, res2.changes


def test_unauthenticated_client_refused(formed):
    from wizard import mongo
    from wizard.engine import Runner
    c = formed[0]
    c.ssh_budget()

    async def go():
        r = Runner(c.plan, c.store, [])
        try:
            async with mongo.Forwarded(r.connection(r.inventory.get("mongo1"))) as f:
                with pytest.raises(mongo.OperationFailure) as e:
                    await f.command("rocketchat", {"find": "users"})
                assert e.value.code == 13
                with pytest.raises(mongo.OperationFailure) as e:
                    await f.command("admin", {"createUser": "intruder", "pwd": "x", "roles": ["root"]})
                assert e.value.code == 13   # the localhost exception closed with the first user
            url = mongo.mongo_url(c.plan, r.inventory, c.store.secrets)
            assert url.startswith("mongodb://rocketchat:") and "mongo1:27017,mongo2:27017,mongo3:27017" in url
            assert url.endswith("/rocketchat?replicaSet=rs0&authSource=rocketchat")
        finally:
            await r.pool.close()
    asyncio.run(go())


def _tcp(c, host, addr, port=27017):
    p = c.sh(host, f"timeout 5 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' && echo open || echo closed")
    return p.stdout.strip().splitlines()[-1]


def test_port_closed_to_non_peer_and_public(formed):
    c = formed[0]
    m1 = c.hosts["mongo1"]
    assert _tcp(c, "web1", m1.private_ip) == "open"           # a peer (Rocket.Chat) gets in
    assert _tcp(c, OUTSIDER, m1.private_ip) == "closed"       # same private network, not a peer
    s = socket.socket()
    s.settimeout(3)
    try:                                                       # the public side, from outside
        assert s.connect_ex((m1.public_ip, 27017)) != 0
    finally:
        s.close()


def test_failover_visible_on_status_board(formed):
    c = formed[0]
    before = {m.name: m.state for m in c.members()}
    old = next(n for n, s in before.items() if s == "PRIMARY")
    c.sh(old, "systemctl stop mongod")
    t0 = time.monotonic()
    try:
        def new_primary(ms):
            d = {m.name: m for m in ms}
            return d[old].health == 0 and any(m.state == "PRIMARY" and m.name != old for m in ms)
        ok, seen = c.poll_members(new_primary, 60, every=1.0)
        board = {m.name: (m.state, m.health, m.lag_s) for m in seen}
        assert ok, f"no new primary after stopping {old}: {board}"
        new = next(m.name for m in seen if m.state == "PRIMARY")
        say(f"stopped mongod on {old}: {new} PRIMARY after {time.monotonic() - t0:.1f} s; board: {board}")
    finally:
        c.sh(old, "systemctl start mongod")
    ok, seen = c.poll_members(lambda ms: {m.name: m.state for m in ms}.get(old) == "SECONDARY", 60)
    assert ok, [(m.name, m.state) for m in seen]


def test_loose_keyfile_refused_then_put_back(formed):
    """A keyfile someone made group-readable: mongod refuses to start with MongoDB's message,
    and the next apply restores 0400 and starts mongod again."""
    from recipes import mongodb
    c = formed[0]
    p = c.sh("mongo3", "chmod 0440 /etc/mongodb/keyfile && systemctl restart mongod; sleep 3; "
                       "systemctl is-active mongod; grep -c 'permissions on /etc/mongodb/keyfile are too open' "
                       "/var/log/mongodb/mongod.log")
    lines = p.stdout.split()
    assert lines[0] in ("failed", "inactive", "activating"), p.stdout
    assert int(lines[-1]) >= 1, p.stdout
    res, _ = c.run([mongodb.PHASE])
    assert res.ok, res.failures
    fixed = {s for h, s, _ in res.changes if h == "mongo3"}
    assert {"mongo.keyfile", "mongo.service"} <= fixed, res.changes
    ok, seen = c.poll_members(lambda ms: sorted(m.state for m in ms) == ["PRIMARY", "SECONDARY", "SECONDARY"], 60)
    assert ok, [(m.name, m.state) for m in seen]
