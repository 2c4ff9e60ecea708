"""The MongoDB steps' checks on recorded facts (no SSH): what each decides, and why."""
from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest

from recipes import mongodb as rm
from wizard import mongo
from wizard.engine import Change, Ctx, Inventory, NoChange, StepError
from wizard.ops import Put
from wizard.plan import Plan
from wizard.state import HostRecord, Secrets

NAMES = ["mongo1", "mongo2", "mongo3", "web1"]


def inventory(n_mongo=3):
    names = [f"mongo{i}" for i in range(1, n_mongo + 1)] + ["web1"]
    return [HostRecord(name=n, role="web" if n.startswith("web") else "mongo", public_ip=f"198.18.48.{10 + i}",
                       private_ip=f"198.18.49.{10 + i}", host_key="ssh-ed25519 AAAA") for i, n in enumerate(names)]


class FakeRunner:
    def __init__(self, plan, hosts, tmp):
        self.plan = plan
        self.inventory = Inventory(hosts)
        self.store = SimpleNamespace(secrets=Secrets(tmp / "secrets.toml"))

    def emit(self, e):
        pass


@pytest.fixture
def make(tmp_path):
    key = tmp_path / "id"
    key.write_text("x")
    key.with_name("id.pub").write_text("ssh-ed25519 AAAA test\n")

    def make_ctx(host="mongo1", facts=None, n_mongo=3, **plan_over):
        base = dict(name="rm-test", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
                    ssh_key=str(key), image="debian-12-x64", mongo_members=n_mongo)
        base.update(plan_over)
        plan = Plan.model_validate(base)
        runner = FakeRunner(plan, inventory(n_mongo), tmp_path)
        ctx = Ctx(runner, runner.inventory.get(host), "mongodb")   # type: ignore[arg-type]
        ctx.facts = dict(facts or {})
        ctx.facts_rc = {k: 0 for k in ctx.facts}
        return ctx
    return make_ctx


# ---------------------------------------------------------------- per-host steps

def test_apt_repo_official_debian_and_mirror(make):
    ctx = make(facts={"mongo_os": "debian bookworm", "mongo_lists": "", "mongo_keyring": "no"})
    out = rm.AptRepo().check(ctx)
    assert isinstance(out, Change)
    put = [o for o in out.ops if isinstance(o, Put)][0]
    assert put.path == "/etc/apt/sources.list.d/mongodb-org-8.0.list"
    assert put.data.decode() == ("deb [ signed-by=/usr/share/keyrings/mongodb-server-8.0.gpg ] "
                                 "https://repo.mongodb.org/apt/debian bookworm/mongodb-org/8.0 main\n")
    assert "https://www.mongodb.org/static/pgp/server-8.0.asc" in out.ops[1].script
    ctx = make(facts={"mongo_os": "debian bookworm", "mongo_keyring": "yes",
                      "mongo_lists": "/etc/apt/sources.list.d/mongodb-org-7.0.list:deb [ signed-by=/usr/share/"
                                     "keyrings/mongodb-server-7.0.gpg ] http://198.18.48.1:8080/mongodb-apt "
                                     "bookworm/mongodb-org/7.0 main"},
               mongodb_version="7.0", rocketchat_version="7.10.0", mirrors={"mongodb_apt": "http://198.18.48.1:8080/mongodb-apt"})
    assert isinstance(rm.AptRepo().check(ctx), NoChange)


def test_apt_repo_ubuntu_and_stale_series_removed(make):
    ctx = make(facts={"mongo_os": "ubuntu noble", "mongo_keyring": "yes",
                      "mongo_lists": "/etc/apt/sources.list.d/mongodb-org-7.0.list:deb x"})
    out = rm.AptRepo().check(ctx)
    assert isinstance(out, Change)
    text = [o for o in out.ops if isinstance(o, Put)][0].data.decode()
    assert "arch=amd64,arm64" in text and "noble/mongodb-org/8.0 multiverse" in text
    assert any("rm -f /etc/apt/sources.list.d/mongodb-org-7.0.list" in getattr(o, "script", "") for o in out.ops)


def test_install_pinned_series(make):
    pin = rm.pin_text("8.0")
    ok = {"mongo_pkgs": "mongodb-org 8.0.4 ii \nmongodb-org-server 8.0.4 ii ", "mongo_pin": pin}
    assert isinstance(rm.Install().check(make(facts=ok)), NoChange)
    old = {"mongo_pkgs": "mongodb-org 7.0.12 ii \nmongodb-org-server 7.0.12 ii ", "mongo_pin": pin}
    out = rm.Install().check(make(facts=old))
    assert isinstance(out, Change) and "installed: 7.0.12" in out.summary
    assert "Pin: version 8.0.*" in pin and "Pin-Priority: 1001" in pin


def test_keyfile_same_on_every_member_and_0400(make):
    ctx = make(facts={"mongo_keyfile": ""})
    out = rm.Keyfile().check(ctx)
    key = ctx.secrets.get(mongo.SECRET_KEYFILE)
    assert 6 <= len(key) <= 1024
    put = [o for o in out.ops if isinstance(o, Put)][0]
    assert (put.mode, put.owner, put.group, put.secret) == (0o400, "mongodb", "mongodb", True)
    sha = hashlib.sha256((key + "\n").encode()).hexdigest()
    ctx2 = make(host="mongo3", facts={"mongo_keyfile": f"mongodb:mongodb 400\n{sha}"})
    assert isinstance(rm.Keyfile().check(ctx2), NoChange)        # same secrets: same key on mongo3
    ctx3 = make(host="mongo2", facts={"mongo_keyfile": f"mongodb:mongodb 440\n{sha}"})
    out3 = rm.Keyfile().check(ctx3)
    assert isinstance(out3, Change) and out3.summary.startswith("fix owner/mode")


def test_config_binds_loopback_and_private_only(make):
    ctx = make(host="mongo2", facts={"mongo_conf": "", "mongo_dbpath": ""})
    out = rm.Config().check(ctx)
    conf = [o for o in out.ops if isinstance(o, Put)][0].data.decode()
    assert "bindIp: 127.0.0.1,198.18.49.11\n" in conf
    assert "replSetName: rs0" in conf and "keyFile: /etc/mongodb/keyfile" in conf
    assert "authorization: enabled" in conf and "0.0.0.0" not in conf
    ctx = make(host="mongo2", facts={"mongo_conf": conf, "mongo_dbpath": "mongodb:mongodb"})
    assert isinstance(rm.Config().check(ctx), NoChange)


def test_service_running_on_planned_addresses(make):
    good = {"mongo_unit": "enabled\nactive\n127.0.0.1:27017 198.18.49.10:27017 "}
    assert isinstance(rm.Service().check(make(facts=good)), NoChange)
    only_lo = {"mongo_unit": "enabled\nactive\n127.0.0.1:27017 "}
    out = rm.Service().check(make(facts=only_lo))
    assert isinstance(out, Change) and "restart" in out.summary
    stopped = {"mongo_unit": "disabled\ninactive\n"}
    out = rm.Service().check(make(facts=stopped))
    assert "enable" in out.summary and "start" in out.summary


# ---------------------------------------------------------------- cluster steps

def probe(**kw):
    d = {"auth": {}, "hello": {"setName": None, "info": "Does not have a valid replica set config"}}
    d.update(kw)
    return {"mongo_probe": json.dumps(d)}


def test_replset_initiate_like_ansible(make):
    out = rm.ReplicaSet().check(make(facts=probe()))
    assert isinstance(out, Change)
    assert out.data == {"_id": "rs0", "members": [{"_id": 0, "host": "mongo1:27017"},
                                                  {"_id": 1, "host": "mongo2:27017"},
                                                  {"_id": 2, "host": "mongo3:27017"}]}
    hosts = ["mongo1:27017", "mongo2:27017", "mongo3:27017"]
    same = probe(hello={"setName": "rs0", "hosts": hosts, "primary": "mongo2:27017"})
    out = rm.ReplicaSet().check(make(facts=same))
    assert isinstance(out, NoChange) and "primary: mongo2" in out.reason
    with pytest.raises(StepError, match="another set"):
        rm.ReplicaSet().check(make(facts=probe(hello={"setName": "other", "hosts": hosts})))
    with pytest.raises(StepError, match="not automated"):
        rm.ReplicaSet().check(make(facts=probe(hello={"setName": "rs0", "hosts": hosts[:2]})))


def test_single_member_trial_is_still_a_replica_set(make):
    out = rm.ReplicaSet().check(make(facts=probe(), n_mongo=1))
    assert out.data == {"_id": "rs0", "members": [{"_id": 0, "host": "mongo1:27017"}]}


def test_users_and_health(make):
    assert isinstance(rm.AdminUser().check(make(facts=probe(auth={"admin@admin": "Authentication failed."}))), Change)
    assert isinstance(rm.AdminUser().check(make(facts=probe(auth={"admin@admin": "ok"}))), NoChange)
    line = "rocketchat@rocketchat readWrite@rocketchat"
    ok = probe(auth={"admin@admin": "ok", "rocketchat@rocketchat": "ok"}, users=["admin@admin root@admin", line])
    assert isinstance(rm.AppUser().check(make(facts=ok)), NoChange)
    wider = probe(auth={"admin@admin": "ok", "rocketchat@rocketchat": "ok"},
                  users=["rocketchat@rocketchat dbOwner@rocketchat,readWrite@rocketchat"])
    out = rm.AppUser().check(make(facts=wider))
    assert isinstance(out, Change) and out.data == "update"
    members = [{"name": "mongo1:27017", "state": "PRIMARY", "health": 1},
               {"name": "mongo2:27017", "state": "SECONDARY", "health": 1},
               {"name": "mongo3:27017", "state": "SECONDARY", "health": 1}]
    assert isinstance(rm.Healthy().check(make(facts=probe(members=members))), NoChange)
    members[2] = {"name": "mongo3:27017", "state": "(not reachable/healthy)", "health": 0}
    assert isinstance(rm.Healthy().check(make(facts=probe(members=members))), Change)


def test_mongo_url(make):
    ctx = make()
    url = mongo.mongo_url(ctx.plan, ctx.inventory, ctx.secrets)
    pw = ctx.secrets.get(mongo.SECRET_APP)
    assert url == (f"mongodb://rocketchat:{pw}@mongo1:27017,mongo2:27017,mongo3:27017/rocketchat"
                   "?replicaSet=rs0&authSource=rocketchat")


def test_members_from_status_lag():
    import datetime
    t = datetime.datetime(2026, 12, 3, 12, 0, 0)
    st = {"members": [
        {"name": "mongo1:27017", "stateStr": "PRIMARY", "health": 1.0, "optimeDate": t, "uptime": 5},
        {"name": "mongo2:27017", "stateStr": "SECONDARY", "health": 1.0, "optimeDate": t - datetime.timedelta(seconds=3)},
        {"name": "mongo3:27017", "stateStr": "(not reachable/healthy)", "health": 0.0, "optimeDate": t,
         "lastHeartbeatMessage": "Connection refused"}]}
    ms = mongo.members_from_status(st)
    assert [(m.name, m.state, m.health, m.lag_s) for m in ms] == [
        ("mongo1", "PRIMARY", 1, 0.0), ("mongo2", "SECONDARY", 1, 3.0),
        ("mongo3", "(not reachable/healthy)", 0, None)]
