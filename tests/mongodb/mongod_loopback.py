"""Run several mongod stand-ins on loopback addresses (127.0.48.x) for tests and benches."""
from __future__ import annotations

import base64
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

STANDIN = pathlib.Path(__file__).resolve().parents[1] / "standins" / "mongod" / "mongod"
DEBIAN_BSON = "/usr/lib/python3/dist-packages"


def python_for_standin() -> list[str]:
    """The stand-in runs on hosts with Debian's python3-bson; use it when this machine has it."""
    if os.path.exists(os.path.join(DEBIAN_BSON, "bson")) and os.path.exists("/usr/bin/python3"):
        return ["/usr/bin/python3"]
    return [sys.executable]


class Instance:
    def __init__(self, root: pathlib.Path, name: str, addr: str, port: int, key: str | None,
                 replset: str | None = "rs0", auth=True):
        self.root, self.name, self.addr, self.port = root, name, addr, port
        self.dir = root / name
        self.dbpath = self.dir / "db"
        self.dbpath.mkdir(parents=True, exist_ok=True)
        self.keyfile = self.dir / "keyfile"
        self.log = self.dir / "mongod.log"
        if key is not None:
            self.keyfile.write_text(key + "\n")
            self.keyfile.chmod(0o400)
        lines = [f"storage:\n  dbPath: {self.dbpath}",
                 f"systemLog:\n  destination: file\n  path: {self.log}\n  logAppend: true",
                 f"net:\n  port: {port}\n  bindIp: {addr}"]
        if replset:
            lines.append(f"replication:\n  replSetName: {replset}")
        if key is not None or auth:
            sec = "security:\n"
            if key is not None:
                sec += f"  keyFile: {self.keyfile}\n"
            if auth:
                sec += "  authorization: enabled\n"
            lines.append(sec.rstrip())
        self.conf = self.dir / "mongod.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    @property
    def host(self):
        return f"{self.addr}:{self.port}"

    def start(self, wait=True):
        env = dict(os.environ)
        self.proc = subprocess.Popen(python_for_standin() + [str(STANDIN), "--config", str(self.conf)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if wait:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.proc.stderr.read().decode()}")
                try:
                    socket.create_connection((self.addr, self.port), 0.2).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError(f"{self.name} did not listen")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def new_key() -> str:
    return base64.b64encode(os.urandom(96)).decode()
