"""MongoDB from the wizard's side: names, secrets, MONGO_URL, and pymongo through SSH.

The MongoDB port is never opened to the public side: the wizard reaches a member
through an asyncssh local port forward on that member's (or a peer's) SSH
connection. A forward to 127.0.0.1:27017 on the member itself arrives from
localhost, which is what MongoDB's localhost exception needs for the first user.

pymongo is synchronous; its calls run in a thread so the event loop that carries
the SSH forward keeps pumping bytes.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import quote

import pymongo
from pymongo.errors import OperationFailure

PORT = 27017
REPLSET = "rs0"
APP_DB = "rocketchat"
APP_USER = "rocketchat"
ADMIN_USER = "admin"
KEYFILE = "/etc/mongodb/keyfile"

# names in the deployment's secrets.toml
SECRET_KEYFILE = "mongodb_keyfile"
SECRET_ADMIN = "mongodb_admin_password"
SECRET_APP = "mongodb_rocketchat_password"

# Rocket.Chat needs read and write on its own database, nothing else: change streams
# (which replaced oplog tailing, MONGO_OPLOG_URL) need only `find`/`changeStream` on the
# watched database, which readWrite grants; no `read` on `local`, no cluster roles.
APP_ROLES = [{"role": "readWrite", "db": APP_DB}]


def member_host(name: str) -> str:
    return f"{name}:{PORT}"


def mongo_hosts(inventory: Iterable) -> list:
    return [h for h in inventory if getattr(h, "role", None) == "mongo"]


def replset_config(inventory: Iterable) -> dict:
    """The explicit config: members by hostname (resolved through /etc/hosts to private addresses)."""
    return {"_id": REPLSET, "members": [{"_id": i, "host": member_host(h.name)}
                                        for i, h in enumerate(mongo_hosts(inventory))]}


def mongo_url(plan, inventory, secrets) -> str:
    """MONGO_URL for Rocket.Chat: every member, the set name, the app user."""
    hosts = ",".join(member_host(h.name) for h in mongo_hosts(inventory))
    if not hosts:
        hosts = ",".join(member_host(n) for n, role in _planned(plan) if role == "mongo")
    pw = secrets.get_or_create(SECRET_APP)
    return (f"mongodb://{quote(APP_USER, safe='')}:{quote(pw, safe='')}@{hosts}/{APP_DB}"
            f"?replicaSet={REPLSET}&authSource={APP_DB}")


def _planned(plan) -> list[tuple[str, str]]:
    out = []
    for h in plan.hosts():
        if isinstance(h, tuple):
            out.append((h[0], h[1]))
        else:
            out.append((h.name, h.role))
    return out


# ---------------------------------------------------------------- pymongo over a forward


class Forwarded:
    """A pymongo client reaching `remote_host:port` as seen from the SSH host `conn`."""

    def __init__(self, conn, remote_host: str = "127.0.0.1", port: int = PORT, *,
                 username: str | None = None, password: str | None = None, auth_source: str = "admin",
                 timeout_ms: int = 8000):
        self.conn = conn
        self.remote_host, self.port = remote_host, port
        self.auth = dict(username=username, password=password, authSource=auth_source) if username else {}
        self.timeout_ms = timeout_ms
        self.listener = None
        self.client: pymongo.MongoClient | None = None

    async def __aenter__(self) -> "Forwarded":
        self.listener, lport = await self.conn.forward(self.remote_host, self.port)
        # directConnection: never follow the member's view of the set (its hostnames are
        # not resolvable here); one member, through this tunnel only.
        self.client = pymongo.MongoClient(
            "127.0.0.1", lport, directConnection=True, serverSelectionTimeoutMS=self.timeout_ms,
            connectTimeoutMS=self.timeout_ms, socketTimeoutMS=max(self.timeout_ms, 30000),
            retryWrites=False, appname="rocket-wizard", **self.auth)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            await asyncio.to_thread(self.client.close)
        if self.listener is not None:
            self.listener.close()

    async def command(self, db: str, cmd: dict, **kw) -> dict:
        assert self.client is not None
        from bson.son import SON
        return await asyncio.to_thread(self.client[db].command, SON(cmd), **kw)

    async def hello(self) -> dict:
        return await self.command("admin", {"hello": 1})


ConnectFn = Callable[[Any], Any]     # HostRecord -> wizard.ssh.Connection


# ---------------------------------------------------------------- status board


@dataclass
class MemberState:
    name: str
    state: str            # PRIMARY, SECONDARY, ... or "(not reachable/healthy)", "UNKNOWN"
    health: int           # 1 up, 0 down (as replSetGetStatus)
    lag_s: float | None   # behind the primary's last write; None if unknown
    uptime_s: int | None = None
    message: str = ""


def members_from_status(status: dict) -> list[MemberState]:
    """replSetGetStatus -> one line per member; lag = primary's optimeDate - member's."""
    members = status.get("members", [])
    primary = next((m for m in members if m.get("stateStr") == "PRIMARY"), None)
    out = []
    for m in members:
        lag = None
        if primary is not None and m.get("health") and isinstance(m.get("optimeDate"), datetime.datetime):
            lag = max(0.0, (primary["optimeDate"] - m["optimeDate"]).total_seconds())
        out.append(MemberState(
            name=m.get("name", "").rsplit(":", 1)[0], state=m.get("stateStr", "UNKNOWN"),
            health=int(m.get("health") or 0), lag_s=lag, uptime_s=m.get("uptime"),
            message=m.get("lastHeartbeatMessage", "") or m.get("infoMessage", "")))
    return out


async def member_status(plan, inventory, secrets, connect: ConnectFn, *, timeout: float = 15) -> list[MemberState]:
    """Each member's state, health and replication lag, as the set sees itself.

    Asks every member at once (over SSH to that member's own 127.0.0.1:27017, as the
    admin) and uses the first answer in host order, so a stopped member neither hides
    the set nor slows the board down: it shows up as down in the others' view.
    """
    hosts = mongo_hosts(inventory)
    password = secrets.get(SECRET_ADMIN)
    if password is None:
        return [MemberState(h.name, "UNKNOWN", 0, None, message="no admin password in the secrets yet")
                for h in hosts]

    async def ask(h):
        try:
            # a short server selection: a member whose mongod is down must not hold the board up
            async with Forwarded(connect(h), username=ADMIN_USER, password=password, timeout_ms=3000) as f:
                return await asyncio.wait_for(f.command("admin", {"replSetGetStatus": 1}), timeout)
        except Exception as e:      # PyMongoError, SSH errors, timeouts: try the others
            return f"{h.name}: {str(e).splitlines()[0][:160] if str(e) else type(e).__name__}"
    answers = await asyncio.gather(*(ask(h) for h in hosts))
    for a in answers:
        if isinstance(a, dict):
            return members_from_status(a)
    return [MemberState(h.name, "UNKNOWN", 0, None, message="; ".join(answers)) for h in hosts]


async def wait_until(check: Callable[[], Awaitable[tuple[bool, str]]], timeout: float, every: float,
                     progress: Callable[[str], None]) -> str:
    """Poll `check` (-> (done, summary)) until done; report the summary when it changes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while True:
        done, summary = await check()
        if summary != last:
            progress(summary)
            last = summary
        if done:
            return summary
        if loop.time() > deadline:
            raise TimeoutError(summary)
        await asyncio.sleep(every)


__all__ = ["PORT", "REPLSET", "APP_DB", "APP_USER", "ADMIN_USER", "KEYFILE", "SECRET_KEYFILE", "SECRET_ADMIN",
           "SECRET_APP", "APP_ROLES", "replset_config", "mongo_url", "Forwarded", "MemberState",
           "members_from_status", "member_status", "wait_until", "OperationFailure"]
