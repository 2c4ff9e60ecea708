"""Per-deployment state, secrets and the lock against two writers.

state.json (0600, atomic writes, schema version) maps every planned host to its
real resource and records each run's steps, so a rerun resumes where it stopped
and never creates a resource twice. A droplet id is written the moment the
create call returns, before anything else can fail.

secrets.toml (0600, beside it) holds what the wizard generates: the MongoDB
keyfile, passwords, and the private host keys it gives the droplets. We use a
file rather than the OS keyring because the wizard often runs on headless
machines with no keyring daemon, and the operator must be able to back the
secrets up together with the state. No DigitalOcean token is ever stored.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets as _secrets
import socket
import time
import tomllib
import uuid
from pathlib import Path
from typing import Callable, Literal

import platformdirs
import tomli_w
from pydantic import BaseModel, Field

from .fsutil import atomic_write

SCHEMA_VERSION = 1
DONE = ("ok", "changed", "skipped")


def state_root() -> Path:
    env = os.environ.get("ROCKET_WIZARD_STATE_DIR")
    return Path(env) if env else Path(platformdirs.user_state_dir("rocket-wizard"))


class StateError(Exception):
    pass


class LockedError(StateError):
    pass


class HostRecord(BaseModel):
    name: str
    role: str
    droplet_id: str | None = None
    public_ip: str | None = None
    private_ip: str | None = None
    ssh_user: str = "root"
    ssh_port: int = 22
    host_key: str | None = None        # pinned public host key, OpenSSH format
    ready: bool = False                # first contact done (cloud-init finished)

    @property
    def fqdn_short(self) -> str:
        return self.name


class StepRecord(BaseModel):
    status: Literal["running", "ok", "changed", "skipped", "failed", "interrupted"]
    started: float
    finished: float | None = None
    reason: str = ""


class RunRecord(BaseModel):
    id: str
    started: float
    finished: float | None = None
    status: Literal["running", "done", "failed", "interrupted"] = "running"
    resumed: int = 0
    steps: dict[str, StepRecord] = Field(default_factory=dict)   # "<step>@<host>"

    def done(self, key: str) -> bool:
        rec = self.steps.get(key)
        return rec is not None and rec.status in DONE


class Resource(BaseModel):
    kind: str
    id: str
    name: str
    created: float
    data: dict = Field(default_factory=dict)


class State(BaseModel):
    schema_version: int = SCHEMA_VERSION
    deployment: str
    provider: str = ""
    plan_hash: str = ""
    hosts: dict[str, HostRecord] = Field(default_factory=dict)
    resources: list[Resource] = Field(default_factory=list)
    runs: list[RunRecord] = Field(default_factory=list)
    admin_shown: bool = False          # the generated admin password is shown once, then only kept

    @property
    def last_run(self) -> RunRecord | None:
        return self.runs[-1] if self.runs else None

    def unfinished_run(self) -> RunRecord | None:
        r = self.last_run
        return r if r is not None and r.status != "done" else None


class StateStore:
    """The state of one deployment. Use as a context manager to hold the lock."""

    def __init__(self, name: str, root: Path | None = None):
        self.name = name
        self.dir = (root or state_root()) / name
        self.path = self.dir / "state.json"
        self.secrets = Secrets(self.dir / "secrets.toml")
        self._lock_fd: int | None = None
        self.notice: str = ""          # e.g. "recovered a stale lock"
        self.state = self._load()

    # ---- persistence --------------------------------------------------
    def _load(self) -> State:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return State(deployment=self.name)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise StateError(f"{self.path}: unreadable state ({e}); restore it from a backup") from None
        ver = data.get("schema_version")
        if ver != SCHEMA_VERSION:
            raise StateError(f"{self.path}: schema version {ver}, this wizard reads {SCHEMA_VERSION}")
        return State.model_validate(data)

    def save(self) -> None:
        atomic_write(self.path, self.state.model_dump_json(indent=1).encode(), mode=0o600)

    def exists(self) -> bool:
        return self.path.exists()

    # ---- the lock -------------------------------------------------------
    def lock(self) -> "StateStore":
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.dir / "lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"deployment {self.name!r} is in use by {holder}; wait for it to finish or stop it"
            ) from None
        # flock is released by the kernel when a holder dies, so what is left in
        # the file is only a note about a previous holder that did not clean up.
        old = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if old:
            self.notice = f"recovered a stale lock left by {old} (no longer running)"
        me = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "StateStore":
        return self.lock()

    def __exit__(self, *exc) -> None:
        self.unlock()

    # ---- records ------------------------------------------------------------
    def record_resource(self, kind: str, id: str, name: str, data: dict | None = None) -> None:
        for r in self.state.resources:
            if r.kind == kind and r.id == id:
                r.data.update(data or {})
                break
        else:
            self.state.resources.append(Resource(kind=kind, id=id, name=name, created=time.time(), data=data or {}))
        self.save()

    def host(self, name: str, role: str = "") -> HostRecord:
        rec = self.state.hosts.get(name)
        if rec is None:
            rec = self.state.hosts[name] = HostRecord(name=name, role=role)
        return rec

    def update_host(self, name: str, **fields) -> HostRecord:
        rec = self.state.hosts[name]
        for k, v in fields.items():
            setattr(rec, k, v)
        self.save()
        return rec

    def start_run(self, resume: bool) -> tuple[RunRecord, bool]:
        """The run to use: the unfinished one when resuming, else a new one."""
        run = self.state.unfinished_run() if resume else None
        if run is not None:
            run.status = "running"
            run.resumed += 1
            run.finished = None
            resumed = True
        else:
            run = RunRecord(id=uuid.uuid4().hex[:12], started=time.time())
            self.state.runs.append(run)
            del self.state.runs[:-20]          # keep the state file small
            resumed = False
        self.save()
        return run, resumed

    def step(self, run: RunRecord, key: str, status: str, reason: str = "") -> None:
        now = time.time()
        rec = run.steps.get(key)
        if status == "running" or rec is None:
            rec = run.steps[key] = StepRecord(status=status, started=now, reason=reason)
        if status != "running":
            rec.status = status
            rec.finished = now
            rec.reason = reason
        self.save()

    def finish_run(self, run: RunRecord, status: str) -> None:
        run.status = status
        run.finished = time.time()
        for rec in run.steps.values():
            if rec.status == "running":      # Ctrl-C mid-step: not done, will be redone
                rec.status = "interrupted"
                rec.finished = run.finished
        self.save()


class Secrets:
    """Generated secrets in a 0600 TOML file, written atomically on every change."""

    def __init__(self, path: Path):
        self.path = path
        self._data: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        if self._data is None:
            try:
                self._data = tomllib.loads(self.path.read_text())
            except FileNotFoundError:
                self._data = {}
        return self._data

    def get(self, name: str) -> str | None:
        return self._all().get(name)

    def set(self, name: str, value: str) -> None:
        self._all()[name] = value
        atomic_write(self.path, tomli_w.dumps(self._all()).encode(), mode=0o600)

    def delete(self, name: str) -> None:
        if self._all().pop(name, None) is not None:
            atomic_write(self.path, tomli_w.dumps(self._all()).encode(), mode=0o600)

    def get_or_create(self, name: str, factory: Callable[[], str] | None = None) -> str:
        val = self.get(name)
        if val is None:
            val = factory() if factory else new_password()
            self.set(name, val)
        return val

    def values(self) -> list[str]:
        return list(self._all().values())


def new_password(nbytes: int = 18) -> str:
    # URL-safe, so it can sit in a MONGO_URL without escaping.
    return _secrets.token_urlsafe(nbytes)


def list_deployments(root: Path | None = None) -> list[StateStore]:
    root = root or state_root()
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "state.json").is_file():
                try:
                    out.append(StateStore(d.name, root))
                except StateError:
                    continue
    return out
