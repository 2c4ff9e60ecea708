"""Connections, authentication, authorization and the commands a client sends."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import itertools
import os
import random
import socket
import time
import uuid

from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from . import query, scram
from .errors import RETRYABLE, CommandError
from .repl import PRIMARY, SECONDARY, STARTUP, STARTUP2, STATE_STR, ReplNode, election_id, optime_doc, optime_key
from .store import Store, id_key, now_utc
from .wire import (MSG_MORE_TO_COME, OP_MSG, OP_QUERY, PeerClient, PeerError, op_msg, op_reply,
                   parse_op_msg, parse_op_query, read_message)

MAX_WIRE = {"4.4": 9, "5.0": 13, "6.0": 17, "7.0": 21, "8.0": 25}

# command -> what it needs. "none": anyone; "any": an authenticated user; others are privileges
NOAUTH = {"hello", "ismaster", "ping", "buildinfo", "saslstart", "saslcontinue", "authenticate", "logout",
          "endsessions", "getnonce", "connectionstatus", "whatsmyuri", "_isself", "getlasterror",
          "hostinfo", "listcommands", "getfreemonitoringstatus"}
CATEGORY = {
    "find": "read", "getmore": "read", "count": "read", "distinct": "read", "aggregate": "read",
    "listcollections": "read", "listindexes": "read", "dbstats": "read", "collstats": "read",
    "killcursors": "read", "listsearchindexes": "read",
    "insert": "write", "update": "write", "delete": "write", "findandmodify": "write",
    "createindexes": "write", "create": "write", "drop": "write", "dropindexes": "write",
    "collmod": "write", "committransaction": "write", "aborttransaction": "write",
    "dropdatabase": "dbadmin",
    "createuser": "useradmin", "dropuser": "useradmin", "updateuser": "useradmin", "usersinfo": "useradmin",
    "grantrolestouser": "useradmin", "revokerolesfromuser": "useradmin", "createrole": "useradmin",
    "rolesinfo": "useradmin", "dropallusersfromdatabase": "useradmin",
    "replsetinitiate": "cluster", "replsetreconfig": "cluster", "replsetstepdown": "cluster",
    "replsetfreeze": "cluster", "shutdown": "cluster", "setparameter": "cluster",
    "setfeaturecompatibilityversion": "cluster", "fsync": "cluster",
    "replsetgetstatus": "monitor", "replsetgetconfig": "monitor", "serverstatus": "monitor",
    "getcmdlineopts": "monitor", "getlog": "monitor", "getparameter": "monitor", "currentop": "monitor",
    "getdefaultrwconcern": "monitor", "top": "monitor",
    "listdatabases": "any", "killallsessions": "any", "startsession": "any", "refreshsessions": "any",
    "replsetheartbeat": "internal", "replsetrequestvotes": "internal", "_rspull": "internal",
    "_rssnapshot": "internal",
}
ROLE_PRIVS = {
    "root": {"read", "write", "dbadmin", "useradmin", "cluster", "monitor"},
    "__system": {"read", "write", "dbadmin", "useradmin", "cluster", "monitor", "internal"},
    "readWriteAnyDatabase": {"read", "write"}, "readAnyDatabase": {"read"},
    "userAdminAnyDatabase": {"useradmin"}, "dbAdminAnyDatabase": {"dbadmin", "read"},
    "clusterAdmin": {"cluster", "monitor"}, "clusterManager": {"cluster", "monitor"},
    "clusterMonitor": {"monitor"}, "hostManager": {"monitor"},
    "readWrite": {"read", "write"}, "read": {"read"}, "dbOwner": {"read", "write", "dbadmin", "useradmin"},
    "dbAdmin": {"dbadmin"}, "userAdmin": {"useradmin"},
}
ANY_DB_ROLES = {"root", "__system", "readWriteAnyDatabase", "readAnyDatabase", "userAdminAnyDatabase",
                "dbAdminAnyDatabase", "clusterAdmin", "clusterManager", "clusterMonitor", "hostManager"}
LOCALHOST_EXCEPTION = {"createuser", "createrole", "replsetinitiate"}
WRITES = {"insert", "update", "delete", "findandmodify", "createindexes", "create", "drop", "dropindexes",
          "dropdatabase", "createuser", "dropuser", "updateuser", "grantrolestouser", "revokerolesfromuser",
          "createrole", "collmod", "dropallusersfromdatabase"}
READS = {"find", "getmore", "count", "distinct", "aggregate", "listcollections", "listindexes", "dbstats",
         "collstats", "usersinfo", "listdatabases"}


class Conn:
    _ids = itertools.count(1)

    def __init__(self, peer):
        self.id = next(self._ids)
        self.peer = peer
        self.is_local = ipaddress.ip_address(peer[0]).is_loopback
        self.user = None            # (user, db)
        self.roles: list = []
        self.sasl = None
        self.sasl_db = None


class Cursor:
    def __init__(self, ns, docs):
        self.id = Int64(random.randint(1, 2 ** 62))
        self.ns = ns
        self.docs = docs
        self.pos = 0
        self.touched = time.monotonic()


class Server:
    def __init__(self, cfg: dict, log, version: str):
        self.cfg = cfg
        self.log = log
        self.version = version
        self.wire = MAX_WIRE.get(".".join(version.split(".")[:2]), 25)
        self.dbpath = cfg["dbpath"]
        self.port = cfg["port"]
        self.key = cfg.get("key")
        self.auth = bool(cfg.get("authorization")) or self.key is not None
        self.store = Store(self.dbpath, log)
        self.instance_id = ObjectId()
        self.start_time = time.monotonic()
        self.cursors: dict[int, Cursor] = {}
        self.node = ReplNode(self, cfg["replset"], self.key) if cfg.get("replset") else None
        self.servers = []
        self.conns = 0
        self._cred_cache = {}

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self):
        replayed = self.store.open()
        if replayed:
            self.log("I", "STORAGE", 22430, "Replayed journal entries", {"count": replayed})
        if self.node:
            self.node.load()
            self.node.start()
        for addr in self.cfg["bind"]:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            srv = await asyncio.start_server(self._serve, addr, self.port, family=fam, reuse_address=True)
            self.servers.append(srv)
            self.log("I", "NETWORK", 23016, "Waiting for connections", {"port": self.port, "ssl": "off", "addr": addr})

    async def stop(self):
        for s in self.servers:
            s.close()
        if self.node:
            await self.node.stop()
        self.store.close()

    def on_state_change(self):
        pass

    def on_data(self):
        pass

    # --- the connection loop -------------------------------------------------------------
    async def _serve(self, reader, writer):
        peer = writer.get_extra_info("peername")
        conn = Conn(peer)
        self.conns += 1
        self.log("I", "NETWORK", 22943, "Connection accepted",
                 {"remote": f"{peer[0]}:{peer[1]}", "connectionId": conn.id, "connectionCount": self.conns})
        try:
            while True:
                req_id, _, opcode, body = await read_message(reader)
                if opcode == OP_MSG:
                    flags, doc = parse_op_msg(body)
                    db = doc.pop("$db", "admin")
                    rp = doc.pop("$readPreference", None)
                    sec_ok = bool(rp) and rp.get("mode", "primary") != "primary"
                    reply = await self.run_command(conn, db, doc, sec_ok)
                    if not flags & MSG_MORE_TO_COME:
                        writer.write(op_msg(reply, req_id))
                elif opcode == OP_QUERY:
                    flags, ns, _, _, q = parse_op_query(body)
                    if "$query" in q:
                        q = q["$query"]
                    db = ns.split(".")[0]
                    reply = await self.run_command(conn, db, q, bool(flags & 4), legacy=True)
                    writer.write(op_reply(reply, req_id))
                else:
                    writer.write(op_reply({"ok": 0.0, "errmsg": f"Unsupported opcode {opcode}",
                                           "code": 352, "codeName": "UnsupportedOpQueryCommand"}, req_id))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.conns -= 1
            self.log("I", "NETWORK", 22944, "Connection ended", {"remote": f"{peer[0]}:{peer[1]}",
                                                                 "connectionId": conn.id})
            try:
                writer.close()
            except Exception:
                pass

    # --- dispatch ------------------------------------------------------------------------
    async def run_command(self, conn, db, cmd, secondary_ok, legacy=False) -> dict:
        if not cmd:
            return CommandError(59, "no such command: ''", "CommandNotFound").to_doc()
        name = next(iter(cmd))
        lname = name.lower()
        try:
            handler = getattr(self, "cmd_" + lname, None)
            if handler is None:
                raise CommandError(59, f"no such command: '{name}'", "CommandNotFound")
            self._authorize(conn, db, lname, name, cmd)
            self._check_state(lname, cmd, db, secondary_ok)
            r = handler(conn, db, cmd)
            if asyncio.iscoroutine(r):
                r = await r
            if "ok" not in r:
                r["ok"] = 1.0
        except CommandError as e:
            r = e.to_doc()
            if e.code in RETRYABLE and "txnNumber" in cmd:
                r["errorLabels"] = ["RetryableWriteError"]
        except Exception as e:  # a bug in the stand-in: answer, log, keep serving
            self.log("E", "COMMAND", 1, "Command failed in the stand-in", {"command": name, "error": repr(e)})
            r = CommandError(8, f"stand-in internal error: {e!r}", "UnknownError").to_doc()
        if self.node and self.node.config and lname not in ("hello", "ismaster"):
            r["operationTime"] = self.store.last["ts"]
        return r

    def _authorize(self, conn, db, lname, name, cmd):
        if not self.auth or lname in NOAUTH:
            return
        cat = CATEGORY.get(lname, "any")
        if conn.user is None:
            if conn.is_local and lname in LOCALHOST_EXCEPTION and not self.store.has_users():
                return
            raise CommandError(13, f"Command {name} requires authentication", "Unauthorized")
        if cat == "any":
            return
        if lname == "usersinfo" and self._own_user_info(conn, db, cmd):
            return
        for role, rdb in conn.roles:
            privs = ROLE_PRIVS.get(role, set())
            if cat in privs and (role in ANY_DB_ROLES or rdb == db):
                if role in ("readWriteAnyDatabase", "readAnyDatabase") and db in ("local", "config") \
                        and cat == "write":
                    continue
                return
        raise CommandError(13, f"not authorized on {db} to execute command {{ {name}: {cmd[name]!r} }}",
                           "Unauthorized")

    @staticmethod
    def _own_user_info(conn, db, cmd):
        v = cmd["usersInfo"]
        if isinstance(v, str):
            return (v, db) == conn.user
        if isinstance(v, dict):
            return (v.get("user"), v.get("db")) == conn.user
        return False

    def _check_state(self, lname, cmd, db, secondary_ok):
        if not self.node or db == "local":
            return
        st = self.node.state
        if lname in WRITES:
            if st != PRIMARY:
                raise CommandError(10107, "not primary", "NotWritablePrimary")
        elif lname in READS:
            if self.node.config is None:
                raise CommandError(13436, "node is not in primary or recovering state", "NotPrimaryOrSecondary")
            if st != PRIMARY and not secondary_ok:
                raise CommandError(13435, "not primary and secondaryOk=false", "NotPrimaryNoSecondaryOk")
            if st not in (PRIMARY, SECONDARY):
                raise CommandError(13436, "node is not in primary or recovering state", "NotPrimaryOrSecondary")

    # --- users and credentials ------------------------------------------------------------
    def _user_doc(self, user, db):
        c = self.store.coll("admin.system.users")
        if not c:
            return None
        return c.docs.get(id_key(f"{db}.{user}"))

    def _lookup_creds(self, db, mech):
        def lookup(user):
            if db == "local" and user == "__system":
                if self.key is None:
                    return None
                k = (mech, "__system")
                if k not in self._cred_cache:
                    self._cred_cache[k] = scram.make_credentials(mech, "__system", self.key)
                return self._cred_cache[k]
            u = self._user_doc(user, db)
            return None if u is None else u["credentials"].get(mech)
        return lookup

    def _sasl_start(self, conn, db, cmd):
        mech = cmd.get("mechanism")
        if mech not in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            raise CommandError(2, f"Received authentication for mechanism {mech} which is not enabled",
                               "MechanismUnavailable")
        conv = scram.ServerConversation(mech, self._lookup_creds(db, mech))
        try:
            out = conv.start(bytes(cmd["payload"]))
        except (ValueError, KeyError):
            raise CommandError(18, "Authentication failed.", "AuthenticationFailed")
        conn.sasl, conn.sasl_db = conv, db
        return {"conversationId": 1, "done": False, "payload": Binary(out)}

    def cmd_saslstart(self, conn, db, cmd):
        return self._sasl_start(conn, db, cmd)

    def cmd_saslcontinue(self, conn, db, cmd):
        conv = conn.sasl
        if conv is None:
            raise CommandError(17, "No SASL session state found", "ProtocolError")
        if conv.done:
            conn.sasl = None
            return {"conversationId": 1, "done": True, "payload": Binary(b"")}
        out = conv.finish(bytes(cmd["payload"]))
        if out is None:
            conn.sasl = None
            self.log("I", "ACCESS", 20249, "Authentication failed",
                     {"mechanism": conv.mech, "user": conv.user, "db": conn.sasl_db,
                      "remote": f"{conn.peer[0]}:{conn.peer[1]}"})
            raise CommandError(18, "Authentication failed.", "AuthenticationFailed")
        conn.user = (conv.user, conn.sasl_db)
        if conn.sasl_db == "local" and conv.user == "__system":
            conn.roles = [("__system", "admin")]
        else:
            u = self._user_doc(conv.user, conn.sasl_db)
            conn.roles = [(r["role"], r["db"]) for r in u.get("roles", [])]
        self.log("I", "ACCESS", 5286306, "Successfully authenticated",
                 {"user": conv.user, "db": conn.sasl_db, "mechanism": conv.mech,
                  "remote": f"{conn.peer[0]}:{conn.peer[1]}"})
        done = bool((cmd.get("options") or {}).get("skipEmptyExchange")) or conv_skip(conv)
        if done:
            conn.sasl = None
        return {"conversationId": 1, "done": done, "payload": Binary(out)}

    def cmd_logout(self, conn, db, cmd):
        conn.user, conn.roles = None, []
        return {}

    def cmd_authenticate(self, conn, db, cmd):
        raise CommandError(2, "Auth mechanism not specified", "BadValue")

    def cmd_getnonce(self, conn, db, cmd):
        raise CommandError(59, "no such command: 'getnonce'", "CommandNotFound")

    # --- hello ---------------------------------------------------------------------------
    def _hello(self, conn, db, cmd, legacy_name):
        r = {}
        node = self.node
        writable = node is None or node.state == PRIMARY
        if node is not None and node.config is None:
            r.update({"isWritablePrimary": False, "secondary": False,
                      "info": "Does not have a valid replica set config", "isreplicaset": True})
        elif node is not None:
            cfg = node.config
            hosts = [m["host"] for m in cfg["members"]
                     if not m.get("hidden") and m.get("priority", 1) > 0 and not m.get("arbiterOnly")]
            passives = [m["host"] for m in cfg["members"]
                        if not m.get("hidden") and m.get("priority", 1) == 0 and not m.get("arbiterOnly")]
            r.update({"hosts": hosts, "setName": cfg["_id"], "setVersion": cfg["version"],
                      "isWritablePrimary": writable, "secondary": node.state == SECONDARY})
            if passives:
                r["passives"] = passives
            if node.primary_id is not None:
                r["primary"] = node.host_of(node.primary_id)
            r["me"] = node.my_cfg()["host"] if node.my_cfg() else ""
            if writable:
                r["electionId"] = election_id(node.term)
            last = node.store.last
            r["lastWrite"] = {"opTime": optime_doc(last), "lastWriteDate": node.store.last_wall.replace(microsecond=0),
                              "majorityOpTime": optime_doc(node.commit_point()),
                              "majorityWriteDate": node.store.last_wall.replace(microsecond=0)}
        else:
            r["isWritablePrimary"] = True
        if legacy_name:
            r["ismaster"] = r.pop("isWritablePrimary")
        if cmd.get("helloOk"):
            r["helloOk"] = True
        r.update({"maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
                  "localTime": now_utc().replace(microsecond=(now_utc().microsecond // 1000) * 1000),
                  "logicalSessionTimeoutMinutes": 30, "connectionId": conn.id,
                  "minWireVersion": 0, "maxWireVersion": self.wire, "readOnly": False})
        mechs = cmd.get("saslSupportedMechs")
        if mechs:
            udb, _, uname = mechs.partition(".")
            u = self._user_doc(uname, udb)
            if u is not None:
                r["saslSupportedMechs"] = sorted(u["credentials"])
        spec = cmd.get("speculativeAuthenticate")
        if spec and spec.get("mechanism") in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            try:
                r["speculativeAuthenticate"] = self._sasl_start(conn, spec.get("db", db), spec)
            except CommandError:
                pass
        r["ok"] = 1.0
        return r

    def cmd_hello(self, conn, db, cmd):
        return self._hello(conn, db, cmd, False)

    def cmd_ismaster(self, conn, db, cmd):
        return self._hello(conn, db, cmd, True)

    def cmd_ping(self, conn, db, cmd):
        return {}

    def cmd_buildinfo(self, conn, db, cmd):
        v = [int(x) for x in self.version.split(".")[:3]] + [0]
        return {"version": self.version, "gitVersion": "rocket-wizard-standin", "modules": [],
                "allocator": "system", "javascriptEngine": "none", "sysInfo": "deprecated",
                "versionArray": v, "bits": 64, "debug": False, "maxBsonObjectSize": 16777216,
                "storageEngines": ["standin"], "openssl": {"running": "disabled"}}

    def cmd_whatsmyuri(self, conn, db, cmd):
        return {"you": f"{conn.peer[0]}:{conn.peer[1]}"}

    def cmd_connectionstatus(self, conn, db, cmd):
        users = [{"user": conn.user[0], "db": conn.user[1]}] if conn.user else []
        roles = [{"role": r, "db": d} for r, d in conn.roles]
        return {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": roles}}

    def cmd_hostinfo(self, conn, db, cmd):
        return {"system": {"currentTime": now_utc(), "hostname": socket.gethostname(), "cpuAddrSize": 64,
                           "numCores": os.cpu_count()}, "os": {"type": "Linux"}, "extra": {}}

    def cmd_listcommands(self, conn, db, cmd):
        return {"commands": {n[4:]: {} for n in dir(self) if n.startswith("cmd_")}}

    def cmd_getlasterror(self, conn, db, cmd):
        return {"err": None, "n": 0}

    def cmd__isself(self, conn, db, cmd):
        return {"id": self.instance_id}

    def cmd_endsessions(self, conn, db, cmd):
        return {}

    def cmd_killallsessions(self, conn, db, cmd):
        return {}

    def cmd_refreshsessions(self, conn, db, cmd):
        return {}

    def cmd_startsession(self, conn, db, cmd):
        return {"id": {"id": Binary(uuid.uuid4().bytes, 4)}, "timeoutMinutes": 30}

    def cmd_committransaction(self, conn, db, cmd):
        return {}

    def cmd_aborttransaction(self, conn, db, cmd):
        return {}

    def cmd_getparameter(self, conn, db, cmd):
        return {"featureCompatibilityVersion": {"version": ".".join(self.version.split(".")[:2])}}

    def cmd_setparameter(self, conn, db, cmd):
        return {"was": None}

    def cmd_getdefaultrwconcern(self, conn, db, cmd):
        return {"defaultReadConcern": {"level": "local"}, "defaultWriteConcern": {"w": "majority", "wtimeout": 0},
                "defaultWriteConcernSource": "implicit", "defaultReadConcernSource": "implicit"}

    def cmd_getcmdlineopts(self, conn, db, cmd):
        return {"argv": self.cfg.get("argv", []), "parsed": self.cfg.get("parsed", {})}

    def cmd_getlog(self, conn, db, cmd):
        return {"names": ["global", "startupWarnings"], "totalLinesWritten": 0, "log": []}

    def cmd_serverstatus(self, conn, db, cmd):
        up = time.monotonic() - self.start_time
        r = {"host": socket.gethostname(), "version": self.version, "process": "mongod", "pid": Int64(os.getpid()),
             "uptime": float(int(up)), "uptimeMillis": Int64(int(up * 1000)), "localTime": now_utc(),
             "connections": {"current": self.conns, "available": 51200 - self.conns},
             "storageEngine": {"name": "standin", "persistent": True}}
        if self.node and self.node.config:
            r["repl"] = self._hello(conn, db, {}, False)
            r["repl"].pop("ok", None)
        return r

    def cmd_currentop(self, conn, db, cmd):
        return {"inprog": []}

    def cmd_top(self, conn, db, cmd):
        return {"totals": {}}

    def cmd_fsync(self, conn, db, cmd):
        self.store.write_snapshot()
        return {"numFiles": 1}

    def cmd_shutdown(self, conn, db, cmd):
        if db != "admin":
            raise CommandError(13, "shutdown may only be run against the admin database.", "Unauthorized")
        asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), 15)
        return {}

    # --- replica set commands --------------------------------------------------------------
    def _need_repl(self):
        if not self.node:
            raise CommandError(76, "This node was not started with replication enabled.", "NoReplicationEnabled")

    async def cmd_replsetinitiate(self, conn, db, cmd):
        self._need_repl()
        node = self.node
        if node.config is not None:
            raise CommandError(23, "already initialized", "AlreadyInitialized")
        cfg = cmd["replSetInitiate"]
        if not isinstance(cfg, dict):
            host = f"{socket.gethostname()}:{self.port}"
            cfg = {"_id": node.set_name, "version": 1, "members": [{"_id": 0, "host": host}]}
        cfg = self._normalize_config(cfg, new_version=1)
        if cfg["_id"] != node.set_name:
            raise CommandError(93, f"Attempting to initiate a replica set with name {cfg['_id']}, but command "
                                   f"line reports {node.set_name}; rejecting", "InvalidReplicaSetConfig")
        self_id = await self._find_self(cfg)
        if self_id is None:
            raise CommandError(74, f"No host described in new configuration with {{version: {cfg['version']}, "
                                   f"term: 0}} for replica set {cfg['_id']} maps to this node", "NodeNotFound")
        # quorum check: every proposed member must answer a heartbeat, authenticated with our keyfile
        node.self_id = self_id
        failures = []

        async def probe(m):
            host, _, port = m["host"].rpartition(":")
            client = PeerClient(host, int(port), self.key, timeout=10.0)
            try:
                req = {"replSetHeartbeat": node.set_name, "target": m["host"], "checkEmpty": True,
                       "term": Int64(0), "from": "", "fromId": self_id, "configVersion": -2}
                await client.command("admin", req, timeout=10.0)
            except (PeerError, CommandError) as e:
                failures.append(f"{m['host']} failed with {e}")
            finally:
                client.close()
        await asyncio.gather(*(probe(m) for m in cfg["members"] if m["_id"] != self_id))
        if failures:
            node.self_id = None
            msg = ("replSetInitiate quorum check failed because not all proposed set members responded "
                   "affirmatively: " + ", ".join(sorted(failures)))
            self.log("W", "REPL", 21416, "replSetInitiate failed", {"error": msg})
            raise CommandError(74, msg, "NodeNotFound")
        cfg["term"] = 0
        if node.config is not None:
            raise CommandError(23, "already initialized", "AlreadyInitialized")
        self.log("I", "REPL", 21356, "replSetInitiate config object parses ok", {"numMembers": len(cfg["members"])})
        node._adopt_config(cfg, self_id=self_id)
        node.stand_now = True
        self.store.log_op(0, "n", "", {"msg": "initiating set"})
        return {}

    async def _find_self(self, cfg):
        async def is_self(m):
            host, _, port = m["host"].rpartition(":")
            if int(port) != self.port:
                return False
            c = PeerClient(host, int(port), None, timeout=10.0)
            try:
                r = await c.command("admin", {"_isSelf": 1})
                return r.get("id") == self.instance_id
            except (PeerError, CommandError):
                return False
            finally:
                c.close()
        results = await asyncio.gather(*(is_self(m) for m in cfg["members"]))
        for m, ok in zip(cfg["members"], results):
            if ok:
                return m["_id"]
        return None

    def _normalize_config(self, cfg, new_version=None):
        cfg = dict(cfg)
        if "_id" not in cfg or not isinstance(cfg.get("members"), list) or not cfg["members"]:
            raise CommandError(93, "Replica set configuration must have an _id and a non-empty members array",
                               "InvalidReplicaSetConfig")
        if new_version is not None:
            cfg["version"] = cfg.get("version", new_version)
        members, ids, hosts = [], set(), set()
        for i, m in enumerate(cfg["members"]):
            m = dict(m)
            if "host" not in m or "_id" not in m:
                raise CommandError(93, f"members.{i} must have _id and host", "InvalidReplicaSetConfig")
            if ":" not in m["host"]:
                m["host"] = f"{m['host']}:27017"
            if m["_id"] in ids:
                raise CommandError(93, f"Found two member configurations with same _id field, members.{i}._id == "
                                       f"{m['_id']}", "InvalidReplicaSetConfig")
            if m["host"] in hosts:
                raise CommandError(93, f"Found two member configurations with same host field, members.{i}.host == "
                                       f"{m['host']}", "InvalidReplicaSetConfig")
            ids.add(m["_id"])
            hosts.add(m["host"])
            full = {"_id": m["_id"], "host": m["host"], "arbiterOnly": m.get("arbiterOnly", False),
                    "buildIndexes": True, "hidden": m.get("hidden", False), "priority": m.get("priority", 1.0),
                    "tags": m.get("tags", {}), "secondaryDelaySecs": Int64(0), "votes": m.get("votes", 1)}
            if full["arbiterOnly"]:
                raise CommandError(93, "arbiters are not imitated by the stand-in", "InvalidReplicaSetConfig")
            members.append(full)
        if sum(1 for m in members if m["votes"]) > 7:
            raise CommandError(93, "Replica set configuration contains more than 7 voting members",
                               "InvalidReplicaSetConfig")
        cfg["members"] = members
        cfg.setdefault("protocolVersion", Int64(1))
        cfg.setdefault("writeConcernMajorityJournalDefault", True)
        settings = {"chainingAllowed": True, "heartbeatIntervalMillis": 2000, "heartbeatTimeoutSecs": 10,
                    "electionTimeoutMillis": 10000, "catchUpTimeoutMillis": -1,
                    "catchUpTakeoverDelayMillis": 30000, "getLastErrorModes": {},
                    "getLastErrorDefaults": {"w": 1, "wtimeout": 0}, "replicaSetId": ObjectId()}
        settings.update(cfg.get("settings") or {})
        cfg["settings"] = settings
        return cfg

    def cmd_replsetgetstatus(self, conn, db, cmd):
        self._need_repl()
        node = self.node
        if node.config is None:
            raise CommandError(94, "no replset config has been received", "NotYetInitialized")
        now = now_utc()
        last = node.store.last
        members = []
        for m in node.config["members"]:
            if m["_id"] == node.self_id:
                d = {"_id": m["_id"], "name": m["host"], "health": 1.0, "state": node.state,
                     "stateStr": STATE_STR[node.state], "uptime": int(time.monotonic() - self.start_time),
                     "optime": optime_doc(last), "optimeDate": node.store.last_wall.replace(microsecond=0),
                     "lastAppliedWallTime": node.store.last_wall, "lastDurableWallTime": node.store.last_wall,
                     "syncSourceHost": node.host_of(node.sync_source) or "", "syncSourceId": node.sync_source if node.sync_source is not None else -1,
                     "infoMessage": "", "configVersion": node.config["version"],
                     "configTerm": Int64(node.config.get("term", -1)), "self": True, "lastHeartbeatMessage": ""}
                if node.state == PRIMARY:
                    d["electionTime"] = node.election_time
                    d["electionDate"] = node.election_date
                members.append(d)
                continue
            p = node.members[m["_id"]]
            d = {"_id": m["_id"], "name": m["host"], "health": float(p.health or 0),
                 "state": p.state if p.health else 8, "stateStr": STATE_STR.get(p.state if p.health else 8, "UNKNOWN"),
                 "uptime": int((now - p.up_since).total_seconds()) if p.up_since and p.health else 0,
                 "optime": optime_doc(p.optime), "optimeDurable": optime_doc(p.optime),
                 "optimeDate": p.optime_wall.replace(microsecond=0), "optimeDurableDate": p.optime_wall.replace(microsecond=0),
                 "lastAppliedWallTime": p.optime_wall, "lastDurableWallTime": p.optime_wall,
                 "lastHeartbeat": p.last_hb or datetime.datetime.fromtimestamp(0, datetime.timezone.utc),
                 "lastHeartbeatRecv": p.last_hb_recv or datetime.datetime.fromtimestamp(0, datetime.timezone.utc),
                 "pingMs": Int64(p.ping_ms), "lastHeartbeatMessage": p.message, "syncSourceHost": p.sync_source or "",
                 "syncSourceId": -1, "infoMessage": "", "configVersion": p.config_version,
                 "configTerm": Int64(node.config.get("term", -1))}
            if p.state == PRIMARY and p.health and p.election_time:
                d["electionTime"] = p.election_time
            members.append(d)
        cp = node.commit_point()
        maj = node.majority()
        return {"set": node.set_name, "date": now, "myState": node.state, "term": Int64(node.term),
                "syncSourceHost": node.host_of(node.sync_source) or "",
                "syncSourceId": node.sync_source if node.sync_source is not None else -1,
                "heartbeatIntervalMillis": Int64(2000), "majorityVoteCount": maj, "writeMajorityCount": maj,
                "votingMembersCount": node._voters(), "writableVotingMembersCount": node._voters(),
                "optimes": {"lastCommittedOpTime": optime_doc(cp), "readConcernMajorityOpTime": optime_doc(cp),
                            "appliedOpTime": optime_doc(last), "durableOpTime": optime_doc(last),
                            "lastAppliedWallTime": node.store.last_wall, "lastDurableWallTime": node.store.last_wall},
                "members": members}

    def cmd_replsetgetconfig(self, conn, db, cmd):
        self._need_repl()
        if self.node.config is None:
            raise CommandError(94, "no replset config has been received", "NotYetInitialized")
        return {"config": self.node.config}

    async def cmd_replsetreconfig(self, conn, db, cmd):
        self._need_repl()
        node = self.node
        if node.config is None:
            raise CommandError(94, "no replset config has been received", "NotYetInitialized")
        force = bool(cmd.get("force"))
        if node.state != PRIMARY and not force:
            raise CommandError(10107, "replSetReconfig should only be run on a writable PRIMARY. Current state "
                                      f"{STATE_STR[node.state]};", "NotWritablePrimary")
        cfg = self._normalize_config(cmd["replSetReconfig"])
        if cfg["_id"] != node.set_name:
            raise CommandError(103, f"New and old configurations differ in replica set name; old was "
                                    f"{node.set_name}, and new is {cfg['_id']}", "NewReplicaSetConfigurationIncompatible")
        if force:
            cfg["version"] = node.config["version"] + random.randint(10000, 100000)
        elif cfg.get("version", 0) <= node.config["version"]:
            raise CommandError(103, f"New replica set configuration version must be greater than old, but "
                                    f"{cfg.get('version')} is not greater than {node.config['version']} for "
                                    f"replica set {node.set_name}", "NewReplicaSetConfigurationIncompatible")
        cfg["term"] = node.term
        me = node.my_cfg()["host"]
        if not any(m["host"] == me for m in cfg["members"]):
            raise CommandError(74, f"No host described in new configuration with {{version: {cfg['version']}, "
                                   f"term: {node.term}}} for replica set {node.set_name} maps to this node",
                               "NodeNotFound")
        node._adopt_config(cfg, self_host=me)
        return {}

    def cmd_replsetstepdown(self, conn, db, cmd):
        self._need_repl()
        self.node.step_down(float(cmd.get("replSetStepDown") or 60))
        return {}

    def cmd_replsetfreeze(self, conn, db, cmd):
        self._need_repl()
        self.node.freeze_until = time.monotonic() + float(cmd["replSetFreeze"])
        return {}

    def cmd_replsetheartbeat(self, conn, db, cmd):
        self._need_repl()
        return self.node.on_heartbeat(cmd, conn.peer[0])

    def cmd_replsetrequestvotes(self, conn, db, cmd):
        self._need_repl()
        return self.node.on_request_votes(cmd)

    async def cmd__rspull(self, conn, db, cmd):
        self._need_repl()
        return await self.node.on_pull(cmd)

    def cmd__rssnapshot(self, conn, db, cmd):
        self._need_repl()
        return self.node.on_snapshot()

    # --- writes: logging, write concern -------------------------------------------------
    def _term(self):
        return self.node.term if self.node else 0

    def _log(self, op, ns, o, o2=None):
        e = self.store.log_op(self._term(), op, ns, o, o2)
        if self.node:
            self.node.notify_write()
        return e

    async def _write_concern(self, cmd, reply):
        if not self.node or not self.node.config:
            return reply
        wc = cmd.get("writeConcern") or {}
        w = wc.get("w", "majority")
        if w in (0, 1):
            return reply
        timeout = (wc.get("wtimeout") or 0) / 1000 or 60.0
        ok = await self.node.wait_for_majority(dict(self.store.last), timeout)
        if not ok:
            reply["writeConcernError"] = {"code": 64, "codeName": "WriteConcernFailed",
                                          "errmsg": "waiting for replication timed out",
                                          "errInfo": {"wtimeout": True}}
        return reply

    def _ensure_coll(self, db, name):
        ns = f"{db}.{name}"
        c = self.store.coll(ns)
        if c is None:
            self._log("c", f"{db}.$cmd", {"create": name})
            c = self.store.coll(ns)
        return c

    # --- users ---------------------------------------------------------------------------
    def _roles(self, db, roles):
        out = []
        for r in roles or []:
            if isinstance(r, str):
                r = {"role": r, "db": db}
            if r["role"] not in ROLE_PRIVS or r["role"] == "__system":
                raise CommandError(31, f"Could not find role: {r['role']}@{r['db']}", "RoleNotFound")
            out.append({"role": r["role"], "db": r["db"]})
        return out

    async def cmd_createuser(self, conn, db, cmd):
        name = cmd["createUser"]
        if db in ("local", "config") or db == "$external":
            raise CommandError(2, f"Cannot create users in the {db} database", "BadValue")
        if self._user_doc(name, db) is not None:
            raise CommandError(51003, f"User \"{name}@{db}\" already exists", "Location51003")
        if "pwd" not in cmd:
            raise CommandError(2, "Must provide a 'pwd' field for all user documents, except those with "
                                  "'$external' as the user's source db", "BadValue")
        roles = self._roles(db, cmd.get("roles", []))
        mechs = cmd.get("mechanisms") or ["SCRAM-SHA-1", "SCRAM-SHA-256"]
        creds = {m: scram.make_credentials(m, name, cmd["pwd"]) for m in mechs}
        doc = {"_id": f"{db}.{name}", "userId": Binary(uuid.uuid4().bytes, 4), "user": name, "db": db,
               "credentials": creds, "roles": roles}
        if cmd.get("customData"):
            doc["customData"] = cmd["customData"]
        self._ensure_coll("admin", "system.users")
        self._log("i", "admin.system.users", doc)
        self.log("I", "ACCESS", 20326, "Created user", {"user": name, "db": db,
                                                         "localhostException": conn.user is None})
        return await self._write_concern(cmd, {})

    async def cmd_updateuser(self, conn, db, cmd):
        name = cmd["updateUser"]
        u = self._user_doc(name, db)
        if u is None:
            raise CommandError(11, f"Could not find user \"{name}\" for db \"{db}\"", "UserNotFound")
        new = dict(u)
        if "pwd" in cmd:
            new["credentials"] = {m: scram.make_credentials(m, name, cmd["pwd"]) for m in u["credentials"]}
        if "roles" in cmd:
            new["roles"] = self._roles(db, cmd["roles"])
        self._log("u", "admin.system.users", new, {"_id": u["_id"]})
        return await self._write_concern(cmd, {})

    async def cmd_grantrolestouser(self, conn, db, cmd):
        u = self._user_doc(cmd["grantRolesToUser"], db)
        if u is None:
            raise CommandError(11, f"Could not find user \"{cmd['grantRolesToUser']}\" for db \"{db}\"", "UserNotFound")
        new = dict(u)
        new["roles"] = u["roles"] + [r for r in self._roles(db, cmd["roles"]) if r not in u["roles"]]
        self._log("u", "admin.system.users", new, {"_id": u["_id"]})
        return await self._write_concern(cmd, {})

    async def cmd_revokerolesfromuser(self, conn, db, cmd):
        u = self._user_doc(cmd["revokeRolesFromUser"], db)
        if u is None:
            raise CommandError(11, f"Could not find user \"{cmd['revokeRolesFromUser']}\" for db \"{db}\"", "UserNotFound")
        drop = self._roles(db, cmd["roles"])
        new = dict(u)
        new["roles"] = [r for r in u["roles"] if r not in drop]
        self._log("u", "admin.system.users", new, {"_id": u["_id"]})
        return await self._write_concern(cmd, {})

    async def cmd_dropuser(self, conn, db, cmd):
        name = cmd["dropUser"]
        u = self._user_doc(name, db)
        if u is None:
            raise CommandError(11, f"User '{name}@{db}' not found", "UserNotFound")
        self._log("d", "admin.system.users", {"_id": u["_id"]})
        return await self._write_concern(cmd, {})

    async def cmd_createrole(self, conn, db, cmd):
        raise CommandError(2, "createRole is not imitated by the stand-in", "BadValue")

    def cmd_usersinfo(self, conn, db, cmd):
        v = cmd["usersInfo"]
        c = self.store.coll("admin.system.users")
        docs = list(c.docs.values()) if c else []
        if v == 1 or v == 1.0:
            sel = [d for d in docs if d["db"] == db]
        elif isinstance(v, dict) and v.get("forAllDBs"):
            sel = docs
        else:
            wanted = v if isinstance(v, list) else [v]
            keys = set()
            for w in wanted:
                keys.add((w, db) if isinstance(w, str) else (w["user"], w["db"]))
            sel = [d for d in docs if (d["user"], d["db"]) in keys]
        out = []
        for d in sel:
            e = {"_id": d["_id"], "userId": d["userId"], "user": d["user"], "db": d["db"], "roles": d["roles"],
                 "mechanisms": sorted(d["credentials"])}
            if cmd.get("showCredentials"):
                e["credentials"] = d["credentials"]
            out.append(e)
        return {"users": out}

    def cmd_rolesinfo(self, conn, db, cmd):
        return {"roles": []}

    # --- CRUD ----------------------------------------------------------------------------
    def _coll_name(self, cmd, key):
        name = cmd[key]
        if not isinstance(name, str) or not name:
            raise CommandError(73, f"Invalid namespace specified '{name}'", "InvalidNamespace")
        return name

    def _docs(self, db, name):
        c = self.store.coll(f"{db}.{name}")
        return list(c.docs.values()) if c else []

    def _cursor_reply(self, ns, docs, batch_size, single=False, key="firstBatch"):
        if batch_size is None:
            batch_size = 101
        first = docs[:batch_size] if batch_size else docs
        rest = docs[len(first):]
        cid = Int64(0)
        if rest and not single:
            cur = Cursor(ns, rest)
            self.cursors[int(cur.id)] = cur
            cid = cur.id
        return {"cursor": {key: first, "id": cid, "ns": ns}}

    def cmd_find(self, conn, db, cmd):
        name = self._coll_name(cmd, "find")
        docs = [d for d in self._docs(db, name) if query.matches(d, cmd.get("filter"))]
        docs = query.sort_docs(docs, cmd.get("sort"))
        skip = int(cmd.get("skip") or 0)
        limit = int(cmd.get("limit") or 0)
        docs = docs[skip:]
        single = bool(cmd.get("singleBatch")) or limit < 0
        if limit:
            docs = docs[:abs(limit)]
        docs = [query.project(d, cmd.get("projection")) for d in docs]
        return self._cursor_reply(f"{db}.{name}", docs, cmd.get("batchSize"), single)

    def cmd_getmore(self, conn, db, cmd):
        cid = int(cmd["getMore"])
        cur = self.cursors.get(cid)
        if cur is None:
            raise CommandError(43, f"cursor id {cid} not found", "CursorNotFound")
        bs = cmd.get("batchSize") or len(cur.docs)
        batch = cur.docs[cur.pos:cur.pos + bs]
        cur.pos += len(batch)
        if cur.pos >= len(cur.docs):
            del self.cursors[cid]
            cid = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cid), "ns": cur.ns}}

    def cmd_killcursors(self, conn, db, cmd):
        killed, missing = [], []
        for c in cmd.get("cursors", []):
            (killed if self.cursors.pop(int(c), None) else missing).append(c)
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []}

    def cmd_count(self, conn, db, cmd):
        name = self._coll_name(cmd, "count")
        docs = [d for d in self._docs(db, name) if query.matches(d, cmd.get("query"))]
        docs = docs[int(cmd.get("skip") or 0):]
        if cmd.get("limit"):
            docs = docs[:abs(int(cmd["limit"]))]
        return {"n": len(docs)}

    def cmd_distinct(self, conn, db, cmd):
        name = self._coll_name(cmd, "distinct")
        out = []
        for d in self._docs(db, name):
            if query.matches(d, cmd.get("query")):
                for v in query.get_path(d, cmd["key"]):
                    for x in (v if isinstance(v, list) else [v]):
                        if x is not query.MISSING and not any(query.equal(x, y) for y in out):
                            out.append(x)
        return {"values": out}

    def cmd_aggregate(self, conn, db, cmd):
        name = cmd["aggregate"]
        pipeline = cmd.get("pipeline", [])
        for st in pipeline:
            if "$out" in st or "$merge" in st or "$changeStream" in st or "$lookup" in st:
                raise CommandError(40324, f"Unrecognized pipeline stage name: '{next(iter(st))}' "
                                          f"(not imitated by the stand-in)", "Location40324")
        docs = self._docs(db, name) if isinstance(name, str) else []
        docs = query.aggregate(docs, pipeline)
        bs = (cmd.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(f"{db}.{name}", docs, bs)

    async def cmd_insert(self, conn, db, cmd):
        name = self._coll_name(cmd, "insert")
        ns = f"{db}.{name}"
        c = self._ensure_coll(db, name)
        n, errors = 0, []
        for i, d in enumerate(cmd.get("documents", [])):
            if "_id" not in d:
                d = {"_id": ObjectId(), **d}
            try:
                if id_key(d["_id"]) in c.docs:
                    raise CommandError(11000, f"E11000 duplicate key error collection: {ns} index: _id_ dup key: "
                                              f"{{ _id: {d['_id']!r} }}", "DuplicateKey",
                                       keyPattern={"_id": 1}, keyValue={"_id": d["_id"]})
                c.check_unique(d, ns)
            except CommandError as e:
                errors.append({"index": i, "code": e.code, "errmsg": e.errmsg, **e.extra})
                if cmd.get("ordered", True):
                    break
                continue
            self._log("i", ns, d)
            n += 1
        r = {"n": n}
        if errors:
            r["writeErrors"] = errors
        return await self._write_concern(cmd, r)

    def _update_one(self, db, name, spec, index, r):
        ns = f"{db}.{name}"
        c = self.store.coll(ns)
        docs = list(c.docs.values()) if c else []
        matched = [d for d in docs if query.matches(d, spec.get("q"))]
        if not spec.get("multi"):
            matched = matched[:1]
        if matched:
            for d in matched:
                new = query.apply_update(d, spec["u"])
                r["n"] += 1
                if new != d:
                    c.check_unique(new, ns, ignore_key=id_key(d["_id"]))
                    self._log("u", ns, new, {"_id": d["_id"]})
                    r["nModified"] += 1
        elif spec.get("upsert"):
            seed = query.upsert_seed(spec.get("q"))
            new = query.apply_update(seed, spec["u"], is_insert=True)
            if not query.is_update_doc(spec["u"]) and "_id" in seed:
                new["_id"] = seed["_id"]
            if "_id" not in new:
                new = {"_id": ObjectId(), **new}
            else:
                new = {"_id": new["_id"], **{k: v for k, v in new.items() if k != "_id"}}
            c = self._ensure_coll(db, name)
            c.check_unique(new, ns)
            self._log("i", ns, new)
            r["n"] += 1
            r.setdefault("upserted", []).append({"index": index, "_id": new["_id"]})

    async def cmd_update(self, conn, db, cmd):
        name = self._coll_name(cmd, "update")
        r = {"n": 0, "nModified": 0}
        errors = []
        for i, spec in enumerate(cmd.get("updates", [])):
            try:
                self._update_one(db, name, spec, i, r)
            except CommandError as e:
                errors.append({"index": i, "code": e.code, "errmsg": e.errmsg})
                if cmd.get("ordered", True):
                    break
        if errors:
            r["writeErrors"] = errors
        return await self._write_concern(cmd, r)

    async def cmd_delete(self, conn, db, cmd):
        name = self._coll_name(cmd, "delete")
        ns = f"{db}.{name}"
        n = 0
        for spec in cmd.get("deletes", []):
            matched = [d for d in self._docs(db, name) if query.matches(d, spec.get("q"))]
            if spec.get("limit", 0) == 1:
                matched = matched[:1]
            for d in matched:
                self._log("d", ns, {"_id": d["_id"]})
                n += 1
        return await self._write_concern(cmd, {"n": n})

    async def cmd_findandmodify(self, conn, db, cmd):
        name = cmd.get("findAndModify") or cmd.get("findandmodify")
        ns = f"{db}.{name}"
        docs = [d for d in self._docs(db, name) if query.matches(d, cmd.get("query"))]
        docs = query.sort_docs(docs, cmd.get("sort"))
        proj = cmd.get("fields")
        if cmd.get("remove"):
            if not docs:
                return await self._write_concern(cmd, {"lastErrorObject": {"n": 0}, "value": None})
            d = docs[0]
            self._log("d", ns, {"_id": d["_id"]})
            return await self._write_concern(cmd, {"lastErrorObject": {"n": 1}, "value": query.project(d, proj)})
        upd = cmd.get("update")
        if docs:
            d = docs[0]
            new = query.apply_update(d, upd)
            if new != d:
                self.store.coll(ns).check_unique(new, ns, ignore_key=id_key(d["_id"]))
                self._log("u", ns, new, {"_id": d["_id"]})
            value = new if cmd.get("new") else d
            return await self._write_concern(cmd, {"lastErrorObject": {"n": 1, "updatedExisting": True},
                                                   "value": query.project(value, proj)})
        if cmd.get("upsert"):
            r = {"n": 0, "nModified": 0}
            self._update_one(db, name, {"q": cmd.get("query"), "u": upd, "upsert": True}, 0, r)
            uid = r["upserted"][0]["_id"]
            new = self.store.coll(ns).docs[id_key(uid)]
            return await self._write_concern(cmd, {"lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": uid},
                                                   "value": query.project(new, proj) if cmd.get("new") else None})
        return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None}

    # --- collections, indexes, databases ---------------------------------------------------
    async def cmd_create(self, conn, db, cmd):
        name = self._coll_name(cmd, "create")
        if self.store.coll(f"{db}.{name}") is not None:
            raise CommandError(48, f"Collection {db}.{name} already exists.", "NamespaceExists")
        o = {k: v for k, v in cmd.items() if k in ("create", "capped", "size", "max", "validator")}
        self._log("c", f"{db}.$cmd", o)
        return await self._write_concern(cmd, {})

    async def cmd_drop(self, conn, db, cmd):
        name = self._coll_name(cmd, "drop")
        if self.store.coll(f"{db}.{name}") is None:
            return {"ok": 1.0}  # 7.0+: dropping a missing collection succeeds
        self._log("c", f"{db}.$cmd", {"drop": name})
        return await self._write_concern(cmd, {"ns": f"{db}.{name}", "nIndexesWas": 1})

    async def cmd_dropdatabase(self, conn, db, cmd):
        if db in self.store.dbs:
            self._log("c", f"{db}.$cmd", {"dropDatabase": 1})
        return await self._write_concern(cmd, {"dropped": db})

    async def cmd_createindexes(self, conn, db, cmd):
        name = self._coll_name(cmd, "createIndexes")
        c = self._ensure_coll(db, name)
        before = len(c.indexes)
        for spec in cmd.get("indexes", []):
            spec = dict(spec)
            spec.setdefault("v", 2)
            existing = [ix for ix in c.indexes if ix["name"] == spec["name"]]
            if existing:
                if existing[0]["key"] != spec["key"]:
                    raise CommandError(86, f"An existing index has the same name as the requested index. "
                                           f"Requested index: {spec}, existing index: {existing[0]}",
                                       "IndexKeySpecsConflict")
                continue
            if spec.get("unique"):
                seen = []
                probe = type(c)()
                probe.indexes = [spec]
                for d in c.docs.values():
                    probe.check_unique(d, f"{db}.{name}")
                    probe.docs[id_key(d["_id"])] = d
                del seen
            self._log("c", f"{db}.$cmd", {"createIndexes": name, "spec": spec})
        return await self._write_concern(cmd, {"numIndexesBefore": before, "numIndexesAfter": len(c.indexes),
                                               "createdCollectionAutomatically": False})

    async def cmd_dropindexes(self, conn, db, cmd):
        name = self._coll_name(cmd, "dropIndexes")
        c = self.store.coll(f"{db}.{name}")
        if c is None:
            raise CommandError(26, f"ns not found {db}.{name}", "NamespaceNotFound")
        idx = cmd.get("index", "*")
        if isinstance(idx, dict):
            idx = next((ix["name"] for ix in c.indexes if ix["key"] == idx), None)
            if idx is None:
                raise CommandError(27, "can't find index with key", "IndexNotFound")
        self._log("c", f"{db}.$cmd", {"dropIndexes": name, "index": idx})
        return await self._write_concern(cmd, {"nIndexesWas": len(c.indexes)})

    async def cmd_collmod(self, conn, db, cmd):
        return {}

    def cmd_listcollections(self, conn, db, cmd):
        out = []
        for name, c in sorted(self.store.dbs.get(db, {}).items()):
            if name.startswith("system.") and db != "admin":
                continue
            info = {"name": name, "type": "collection", "options": c.options,
                    "info": {"readOnly": False, "uuid": c.uuid}, "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
            if cmd.get("filter") and not query.matches(info, cmd["filter"]):
                continue
            if cmd.get("nameOnly"):
                info = {"name": name, "type": "collection"}
            out.append(info)
        return self._cursor_reply(f"{db}.$cmd.listCollections", out, (cmd.get("cursor") or {}).get("batchSize"))

    def cmd_listindexes(self, conn, db, cmd):
        name = self._coll_name(cmd, "listIndexes")
        c = self.store.coll(f"{db}.{name}")
        if c is None:
            raise CommandError(26, f"ns does not exist: {db}.{name}", "NamespaceNotFound")
        return self._cursor_reply(f"{db}.{name}", list(c.indexes), (cmd.get("cursor") or {}).get("batchSize"))

    def cmd_listdatabases(self, conn, db, cmd):
        names = sorted(self.store.dbs)
        if self.auth and conn.user and not any(r in ANY_DB_ROLES for r, _ in conn.roles):
            mine = {d for _, d in conn.roles}
            names = [n for n in names if n in mine]
        dbs = [{"name": n, "sizeOnDisk": Int64(8192), "empty": False} for n in names]
        if cmd.get("nameOnly"):
            dbs = [{"name": d["name"]} for d in dbs]
        return {"databases": dbs, "totalSize": Int64(8192 * len(dbs)), "totalSizeMb": Int64(0)}

    def cmd_dbstats(self, conn, db, cmd):
        colls = self.store.dbs.get(db, {})
        return {"db": db, "collections": len(colls), "views": 0,
                "objects": sum(len(c.docs) for c in colls.values()), "dataSize": 0.0, "storageSize": 0.0,
                "indexes": sum(len(c.indexes) for c in colls.values()), "indexSize": 0.0}

    def cmd_collstats(self, conn, db, cmd):
        c = self.store.coll(f"{db}.{cmd['collStats']}")
        if c is None:
            raise CommandError(26, f"ns not found {db}.{cmd['collStats']}", "NamespaceNotFound")
        return {"ns": f"{db}.{cmd['collStats']}", "count": len(c.docs), "size": 0, "nindexes": len(c.indexes)}


def conv_skip(conv) -> bool:
    return False
