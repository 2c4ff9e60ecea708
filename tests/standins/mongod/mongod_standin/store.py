"""Documents, indexes and the oplog, kept in memory and journaled under dbPath.

Every change is an oplog entry ({ts, t, op, ns, o, o2}); the primary appends entries, a
secondary applies the primary's entries, and both journal them to dbPath so a restart
replays them. Updates are logged as full post-images (simpler than MongoDB's diffs).
"""
from __future__ import annotations

import copy
import datetime
import os
import struct
import time
import uuid

from bson.binary import Binary
from bson.timestamp import Timestamp

from . import query
from .errors import CommandError
from .wire import decode, encode

OPLOG_MEMORY = 20000      # entries kept for secondaries to catch up from
COMPACT_EVERY = 5000      # journal entries before a snapshot is written


def id_key(v) -> bytes:
    return encode({"": v})


class Collection:
    def __init__(self, options=None, indexes=None, coll_uuid=None):
        self.docs: dict[bytes, dict] = {}
        self.options = options or {}
        self.indexes = indexes or [{"v": 2, "key": {"_id": 1}, "name": "_id_"}]
        self.uuid = coll_uuid or Binary(uuid.uuid4().bytes, 4)

    def check_unique(self, doc, ns, ignore_key=None):
        for ix in self.indexes:
            if not ix.get("unique") or ix["name"] == "_id_":
                continue
            fields = list(ix["key"])
            mine = [query.get_path(doc, f)[0] for f in fields]
            if ix.get("sparse") and all(v is query.MISSING for v in mine):
                continue
            if "partialFilterExpression" in ix and not query.matches(doc, ix["partialFilterExpression"]):
                continue
            for k, other in self.docs.items():
                if k == ignore_key:
                    continue
                theirs = [query.get_path(other, f)[0] for f in fields]
                if "partialFilterExpression" in ix and not query.matches(other, ix["partialFilterExpression"]):
                    continue
                if all(query.equal(None if a is query.MISSING else a, None if b is query.MISSING else b)
                       for a, b in zip(mine, theirs)):
                    dup = ", ".join(f"{f}: {v!r}" for f, v in zip(fields, mine))
                    raise CommandError(11000, f"E11000 duplicate key error collection: {ns} index: "
                                              f"{ix['name']} dup key: {{ {dup} }}", "DuplicateKey",
                                       keyPattern=ix["key"], keyValue=dict(zip(fields, mine)))


class Store:
    def __init__(self, dbpath: str, log):
        self.dbpath = dbpath
        self.log = log
        self.dbs: dict[str, dict[str, Collection]] = {}
        self.oplog: list[dict] = []
        self.last = {"ts": Timestamp(0, 0), "t": -1}
        self.last_wall = datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
        self._journal_path = os.path.join(dbpath, "standin-journal.bson")
        self._snapshot_path = os.path.join(dbpath, "standin-snapshot.bson")
        self._journal = None
        self._journal_count = 0

    # --- namespaces ----------------------------------------------------------------------
    def coll(self, ns: str, create=False) -> Collection | None:
        db, _, name = ns.partition(".")
        colls = self.dbs.get(db)
        if colls is None:
            if not create:
                return None
            colls = self.dbs[db] = {}
        c = colls.get(name)
        if c is None and create:
            c = colls[name] = Collection()
        return c

    def has_users(self) -> bool:
        users = self.coll("admin.system.users")
        roles = self.coll("admin.system.roles")
        return bool(users and users.docs) or bool(roles and roles.docs)

    # --- optimes -------------------------------------------------------------------------
    def next_ts(self) -> Timestamp:
        now = int(time.time())
        last = self.last["ts"]
        if now > last.time:
            return Timestamp(now, 1)
        return Timestamp(last.time, last.inc + 1)

    @staticmethod
    def optime_key(op) -> tuple:
        return (op["t"], op["ts"].time, op["ts"].inc)

    # --- applying entries ----------------------------------------------------------------
    def apply(self, e: dict):
        op, ns = e["op"], e.get("ns", "")
        if op == "i":
            c = self.coll(ns, create=True)
            c.docs[id_key(e["o"]["_id"])] = e["o"]
        elif op == "u":
            c = self.coll(ns, create=True)
            c.docs[id_key(e["o2"]["_id"])] = e["o"]
        elif op == "d":
            c = self.coll(ns)
            if c:
                c.docs.pop(id_key(e["o"]["_id"]), None)
        elif op == "c":
            db = ns.split(".")[0]
            o = e["o"]
            if "create" in o:
                c = self.coll(f"{db}.{o['create']}", create=True)
                c.options = {k: v for k, v in o.items() if k != "create"}
            elif "drop" in o:
                self.dbs.get(db, {}).pop(o["drop"], None)
            elif "dropDatabase" in o:
                self.dbs.pop(db, None)
            elif "createIndexes" in o:
                c = self.coll(f"{db}.{o['createIndexes']}", create=True)
                spec = o["spec"]
                c.indexes = [ix for ix in c.indexes if ix["name"] != spec["name"]] + [spec]
            elif "dropIndexes" in o:
                c = self.coll(f"{db}.{o['dropIndexes']}")
                if c:
                    c.indexes = [ix for ix in c.indexes if ix["name"] == "_id_" or
                                 (o["index"] != "*" and ix["name"] != o["index"])]
        # "n" (no-op, e.g. "new primary") changes nothing but the optime
        self.last = {"ts": e["ts"], "t": e["t"]}
        self.last_wall = e.get("wall") or datetime.datetime.now(datetime.timezone.utc)
        self.oplog.append(e)
        if len(self.oplog) > OPLOG_MEMORY * 1.2:
            del self.oplog[:len(self.oplog) - OPLOG_MEMORY]
        self._write_journal(e)

    def log_op(self, term: int, op: str, ns: str, o: dict, o2: dict | None = None) -> dict:
        """On the primary: build the next entry and apply it."""
        e = {"ts": self.next_ts(), "t": term, "v": 2, "op": op, "ns": ns, "o": o,
             "wall": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)}
        if o2 is not None:
            e["o2"] = o2
        self.apply(e)
        return e

    def entries_after(self, after: dict):
        """Entries after optime `after`; None if `after` is not in our history (resync)."""
        key = self.optime_key(after)
        lo = 0
        for i in range(len(self.oplog) - 1, -1, -1):
            k = self.optime_key(self.oplog[i])
            if k == key:
                lo = i + 1
                break
            if k < key:
                return None
        else:
            return None
        return self.oplog[lo:]

    # --- whole-state copies (initial sync / resync) ---------------------------------------
    def dump(self) -> list:
        out = []
        for db, colls in self.dbs.items():
            for name, c in colls.items():
                out.append({"ns": f"{db}.{name}", "options": c.options, "indexes": c.indexes,
                            "docs": list(c.docs.values())})
        return out

    def load_dump(self, colls: list, last: dict):
        self.dbs = {}
        for c in colls:
            col = self.coll(c["ns"], create=True)
            col.options, col.indexes = c["options"], c["indexes"]
            for d in c["docs"]:
                col.docs[id_key(d["_id"])] = d
        self.last = {"ts": last["ts"], "t": last["t"]}
        marker = {"ts": last["ts"], "t": last["t"], "op": "n", "ns": "", "o": {"msg": "initial sync"}}
        self.oplog = [marker]
        self.write_snapshot()

    # --- persistence ---------------------------------------------------------------------
    def _write_journal(self, e):
        if self._journal is None:
            return
        self._journal.write(encode(e))
        self._journal.flush()
        self._journal_count += 1
        if self._journal_count >= COMPACT_EVERY:
            self.write_snapshot()

    def write_snapshot(self):
        tmp = self._snapshot_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(encode({"meta": {"ts": self.last["ts"], "t": self.last["t"], "wall": self.last_wall}}))
            for c in self.dump():
                docs = c.pop("docs")
                f.write(encode({"coll": c}))
                for d in docs:
                    f.write(encode({"ns": c["ns"], "d": d}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._snapshot_path)
        if self._journal is not None:
            self._journal.close()
        self._journal = open(self._journal_path, "wb")
        self._journal_count = 0

    @staticmethod
    def _read_bson_file(path):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 4 <= len(data):
            size, = struct.unpack_from("<i", data, pos)
            if size < 5 or pos + size > len(data):
                break  # a torn last record from a crash: ignore it, like a journal would
            yield decode(data[pos:pos + size])
            pos += size

    def open(self):
        """Load the snapshot, replay the journal, then keep journaling."""
        if os.path.exists(self._snapshot_path):
            for rec in self._read_bson_file(self._snapshot_path):
                if "meta" in rec:
                    self.last = {"ts": rec["meta"]["ts"], "t": rec["meta"]["t"]}
                    self.last_wall = rec["meta"].get("wall", self.last_wall)
                elif "coll" in rec:
                    c = self.coll(rec["coll"]["ns"], create=True)
                    c.options, c.indexes = rec["coll"]["options"], rec["coll"]["indexes"]
                else:
                    self.coll(rec["ns"], create=True).docs[id_key(rec["d"]["_id"])] = rec["d"]
        # the oldest entry we keep is a marker for the state we started from
        self.oplog = [{"ts": self.last["ts"], "t": self.last["t"], "op": "n", "ns": "", "o": {"msg": "base"}}]
        replayed = 0
        if os.path.exists(self._journal_path):
            for e in self._read_bson_file(self._journal_path):
                if self.optime_key(e) > self.optime_key(self.last):
                    self.apply(e)
                    replayed += 1
        self.write_snapshot()
        return replayed

    def close(self):
        try:
            self.write_snapshot()
        finally:
            if self._journal:
                self._journal.close()
                self._journal = None

    def reset(self):
        """Forget everything (before a full resync from the primary)."""
        self.dbs = {}
        self.oplog = []


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def deep(v):
    return copy.deepcopy(v)
