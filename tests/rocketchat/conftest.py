"""Fixtures for the Rocket.Chat tests: the lab release tree (built once, cached)
and a mongod stand-in replica set on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "standins" / "rocketchat" / "build_tree.py"
MONGOD = ROOT / "tests" / "standins" / "mongod" / "mongod"
TREE = Path(os.environ.get("RW_RC_TREE", "/var/tmp/rocket-wizard/rc-tree"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def rc_tree() -> Path:
    """The mirror tree (rocketchat/, node/, deno/), built by the CI machine's npm and pip."""
    if not shutil.which("npm"):
        pytest.skip("npm is needed to build the Rocket.Chat stand-in tree")
    subprocess.run([sys.executable, str(BUILD), str(TREE)], check=True)
    return TREE


@pytest.fixture(scope="session")
def runtime(rc_tree, tmp_path_factory) -> dict:
    """Node and Deno from the tree, unpacked as the recipe would (PATH for the stand-in)."""
    d = tmp_path_factory.mktemp("runtime")
    node_tgz = next((rc_tree / "node").glob("v*/node-v*-linux-x64.tar.gz"))
    with tarfile.open(node_tgz) as t:
        t.extractall(d, filter="tar")
    node_bin = next(d.glob("node-v*/bin"))
    deno_zip = next((rc_tree / "deno").glob("v*/deno-x86_64-unknown-linux-gnu.zip"))
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(deno_zip), str(d / "deno")], check=True)
    (d / "deno" / "deno").chmod(0o755)
    bundle = d / "rc"
    bundle.mkdir()
    with tarfile.open(rc_tree / "rocketchat" / "8.2.0" / "download") as t:
        t.extractall(bundle, filter="tar")
    return {"PATH": f"{node_bin}:{d / 'deno'}:/usr/bin:/bin", "main": bundle / "bundle" / "main.js"}


class MongodStandin:
    def __init__(self, tmp: Path, bind_ip: str = "127.0.0.1", replset_host: str | None = None):
        # Set up over loopback (the localhost exception); members and clients use replset_host.
        self.ip = replset_host or bind_ip
        self.port = free_port()
        self.dbpath = tmp / "db"
        self.dbpath.mkdir()
        self.log = tmp / "mongod.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(MONGOD), "--port", str(self.port), "--bind_ip", bind_ip,
             "--dbpath", str(self.dbpath), "--replSet", "rs0", "--auth", "--keyFile", str(self._keyfile(tmp))],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self._init()

    def _keyfile(self, tmp: Path) -> Path:
        k = tmp / "keyfile"
        k.write_text("c3RhbmRpbi1rZXlmaWxlLWZvci10ZXN0cy0wMTIzNDU2Nzg5\n")
        k.chmod(0o400)
        return k

    def _init(self) -> None:
        from pymongo import MongoClient

        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"mongod stand-in did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.1)
        c = MongoClient(f"mongodb://127.0.0.1:{self.port}/?directConnection=true", serverSelectionTimeoutMS=5000)
        c.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": f"{self.ip}:{self.port}"}]})
        while not c.admin.command("hello").get("isWritablePrimary"):
            time.sleep(0.1)
        c.admin.command("createUser", "root", pwd="rootpw", roles=["root"])
        c.close()
        self.root = MongoClient(f"mongodb://root:rootpw@{self.ip}:{self.port}/?replicaSet=rs0&authSource=admin",
                                serverSelectionTimeoutMS=5000)
        self.root.rocketchat.command("createUser", "rocketchat", pwd="apppw",
                                     roles=[{"role": "readWrite", "db": "rocketchat"}])

    @property
    def url(self) -> str:
        return f"mongodb://rocketchat:apppw@{self.ip}:{self.port}/rocketchat?replicaSet=rs0&authSource=rocketchat"

    def stop(self) -> None:
        self.root.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def mongod(tmp_path):
    if not MONGOD.exists():
        pytest.skip("the mongod stand-in (tests/standins/mongod) is not here")
    m = MongodStandin(tmp_path)
    yield m
    m.stop()
