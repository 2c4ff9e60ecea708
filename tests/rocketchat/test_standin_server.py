"""The Rocket.Chat stand-in bundle on loopback, against the mongod stand-in with
SCRAM authentication: what the lab relies on it for."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from .conftest import free_port
from .wsclient import WebSocket


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read().decode()
            return r.status, (json.loads(raw) if raw.startswith("{") else raw)
    except urllib.error.HTTPError as e:
        raw = e.read().decode()
        return e.code, (json.loads(raw) if raw.startswith("{") else raw)


class Instance:
    def __init__(self, runtime, mongo_url, port, extra=None):
        self.port = port
        env = {"PATH": runtime["PATH"], "ROOT_URL": "https://chat.lab.test", "PORT": str(port),
               "BIND_IP": "127.0.0.1", "INSTANCE_IP": "127.0.0.1", "TCP_PORT": str(free_port()),
               "MONGO_URL": mongo_url, "HTTP_FORWARDED_COUNT": "1",
               "ADMIN_USERNAME": "boss", "ADMIN_PASS": "first-secret", "ADMIN_EMAIL": "boss@lab.test",
               "ADMIN_NAME": "The Boss", "OVERWRITE_SETTING_Show_Setup_Wizard": "completed",
               "STANDIN_MONGO_TIMEOUT_MS": "3000", **(extra or {})}
        self.proc = subprocess.Popen(["node", str(runtime["main"])], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                if http("GET", self.url("/livez"))[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("no /livez in time")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def instances(runtime, mongod):
    started = []

    def start(port=None, **extra):
        inst = Instance(runtime, mongod.url, port or free_port(), extra)
        started.append(inst)
        return inst
    yield start
    for i in started:
        if i.proc.poll() is None:
            i.stop()


def test_endpoints_admin_signup_and_instances(instances, mongod):
    a = instances().wait()
    b = instances().wait()          # a second instance must not create a second admin
    assert http("GET", a.url("/api/info")) == (200, {"version": "8.2.0", "success": True})
    assert http("GET", b.url("/readyz"))[0] == 200
    assert http("GET", b.url("/health"))[0] == 200

    db = mongod.root.rocketchat
    admins = list(db.users.find({"roles": "admin"}))
    assert [u["username"] for u in admins] == ["boss"]
    assert db.rocketchat_settings.find_one({"_id": "Show_Setup_Wizard"})["value"] == "completed"
    regs = list(db.instances.find())
    assert len(regs) == 2 and {r["extraInformation"]["port"] for r in regs} == {str(a.port), str(b.port)}

    status, login = http("POST", b.url("/api/v1/login"), {"user": "boss", "password": "first-secret"})
    assert status == 200 and login["data"]["me"]["roles"] == ["admin", "user"]
    assert http("POST", a.url("/api/v1/login"), {"user": "boss", "password": "wrong"})[0] == 401
    hdrs = {"X-User-Id": login["data"]["userId"], "X-Auth-Token": login["data"]["authToken"]}
    status, me = http("GET", a.url("/api/v1/me"), headers=hdrs)    # token works on the other instance
    assert status == 200 and me["username"] == "boss"

    status, reg = http("POST", a.url("/api/v1/users.register"),
                       {"username": "mallory", "email": "m@lab.test", "pass": "pw-123456", "name": "M",
                        "roles": ["admin"]})
    assert status == 200 and reg["user"]["roles"] == ["user"]
    status, login = http("POST", a.url("/api/v1/login"), {"user": "mallory", "password": "pw-123456"})
    assert login["data"]["me"]["roles"] == ["user"]
    assert http("POST", a.url("/api/v1/users.register"),
                {"username": "mallory", "email": "x@lab.test", "pass": "p"})[0] == 400


def test_restart_keeps_admin_and_its_password(instances, mongod):
    a = instances().wait()
    a.stop()
    b = instances(ADMIN_PASS="another-secret").wait()
    assert http("POST", b.url("/api/v1/login"), {"user": "boss", "password": "first-secret"})[0] == 200
    assert mongod.root.rocketchat.users.count_documents({"roles": "admin"}) == 1


def test_websocket_ddp(instances):
    a = instances().wait()
    ws = WebSocket("127.0.0.1", a.port)
    try:
        assert ws.ddp_connect()["msg"] == "connected"
        ws.send_text(json.dumps({"msg": "ping", "id": "7"}))
        assert json.loads(ws.recv_text()) == {"msg": "pong", "id": "7"}
    finally:
        ws.close()


def test_wrong_password_and_unreachable_mongodb_exit_with_error(runtime, mongod):
    bad = Instance(runtime, mongod.url.replace("apppw", "nope"), free_port())
    assert bad.proc.wait(30) != 0
    assert "cannot connect to MongoDB" in bad.proc.stdout.read()
    gone = Instance(runtime, f"mongodb://u:p@127.0.0.1:{free_port()}/rocketchat?replicaSet=rs0", free_port())
    assert gone.proc.wait(30) != 0
    out = gone.proc.stdout.read()
    assert "cannot connect to MongoDB" in out and "u:p@" not in out      # password not in the log


def test_missing_deno_fails_like_rocket_chat(runtime, mongod):
    path = ":".join(p for p in runtime["PATH"].split(":") if not p.endswith("/deno"))
    inst = Instance({**runtime, "PATH": path}, mongod.url, free_port())
    assert inst.proc.wait(30) != 0
    assert "deno not usable" in inst.proc.stdout.read()


def test_missing_root_url_is_refused(runtime, mongod):
    env = {"PATH": runtime["PATH"], "MONGO_URL": mongod.url}
    p = subprocess.run(["node", str(runtime["main"])], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "ROOT_URL is required" in p.stderr


def test_bundle_npm_install_production_is_an_offline_noop(runtime, tmp_path):
    server = os.path.dirname(runtime["main"]) + "/programs/server"
    p = subprocess.run(["npm", "install", "--production", "--offline", "--no-audit", "--no-fund",
                        "--cache", str(tmp_path / "cache")],
                       cwd=server, env={"PATH": runtime["PATH"], "HOME": str(tmp_path)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "up to date" in p.stdout
