"""Replica set: config, heartbeats, elections (a simplified protocol version 1) and oplog
pulls from the primary. Members authenticate to each other with the keyfile."""
from __future__ import annotations

import asyncio
import datetime
import os
import random
import time

from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from .errors import CommandError
from .wire import PeerClient, PeerError, decode, encode

STARTUP, PRIMARY, SECONDARY, RECOVERING, STARTUP2, UNKNOWN, ARBITER, DOWN, ROLLBACK, REMOVED = (
    0, 1, 2, 3, 5, 6, 7, 8, 9, 10)
STATE_STR = {0: "STARTUP", 1: "PRIMARY", 2: "SECONDARY", 3: "RECOVERING", 5: "STARTUP2", 6: "UNKNOWN",
             7: "ARBITER", 8: "(not reachable/healthy)", 9: "ROLLBACK", 10: "REMOVED"}

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TIMEOUT = 10.0
ELECTION_TIMEOUT = 10.0


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def election_id(term: int) -> ObjectId:
    # MongoDB builds electionId from the term (OID::fromTerm): drivers compare it to spot stale primaries
    return ObjectId(b"\x7f\xff\xff\xff" + int(term).to_bytes(8, "big"))


def optime_key(o) -> tuple:
    return (o["t"], o["ts"].time, o["ts"].inc)


def optime_doc(o) -> dict:
    return {"ts": o["ts"], "t": Int64(o["t"])}


class Member:
    """What this node knows about another member."""

    def __init__(self, cfg: dict, key: str | None):
        self.cfg = cfg
        host, _, port = cfg["host"].rpartition(":")
        self.client = PeerClient(host, int(port or 27017), key, timeout=HEARTBEAT_TIMEOUT / 2)
        # oplog pulls long-poll: their own connection, so heartbeats and votes never wait behind them
        self.sync_client = PeerClient(host, int(port or 27017), key, timeout=HEARTBEAT_TIMEOUT / 2)
        self.health = None
        self.state = UNKNOWN
        self.term = -1
        self.optime = {"ts": Timestamp(0, 0), "t": -1}
        self.optime_wall = datetime.datetime.fromtimestamp(0, datetime.timezone.utc)
        self.last_hb = None
        self.last_hb_recv = None
        self.last_ok = 0.0          # monotonic time of the last sign of life
        self.ping_ms = 0
        self.message = ""
        self.up_since = None
        self.config_version = -1
        self.sync_source = ""
        self.election_time = None


class ReplNode:
    def __init__(self, server, set_name: str, key: str | None):
        self.server = server
        self.store = server.store
        self.log = server.log
        self.set_name = set_name
        self.key = key
        self.config = None
        self.term = 0
        self.voted_term, self.voted_for = -1, -1
        self.self_id = None
        self.state = STARTUP
        self.primary_id = None
        self.members: dict[int, Member] = {}
        self.election_deadline = time.monotonic() + ELECTION_TIMEOUT
        self.last_majority_seen = time.monotonic()
        self.freeze_until = 0.0
        self.stand_now = False
        self.election_time = None
        self.election_date = None
        self.new_data = asyncio.Event()
        self.hb_wake = asyncio.Event()
        self.applied = asyncio.Event()
        self.member_applied: dict[int, tuple] = {}
        self.tasks: list[asyncio.Task] = []
        self.sync_source = None
        self.path = os.path.join(server.dbpath, "standin-local.bson")
        self.stopping = False

    # --- persistence of config / term / vote ------------------------------------------
    def load(self):
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                d = decode(f.read())
            self.config = d.get("config")
            self.term = d.get("term", 0)
            self.voted_term, self.voted_for = d.get("voted_term", -1), d.get("voted_for", -1)
            self.self_id = d.get("self_id")
        if self.config:
            self.log("I", "REPL", 21392, "Found replica set config document", {"config": self.config["_id"]})
            self._set_members()

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(encode({"config": self.config, "term": self.term, "voted_term": self.voted_term,
                            "voted_for": self.voted_for, "self_id": self.self_id}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _set_members(self):
        old = self.members
        self.members = {}
        for m in self.config["members"]:
            if m["_id"] == self.self_id:
                continue
            if m["_id"] in old and old[m["_id"]].cfg["host"] == m["host"]:
                self.members[m["_id"]] = old[m["_id"]]
                self.members[m["_id"]].cfg = m
            else:
                self.members[m["_id"]] = Member(m, self.key)

    def start(self):
        if self.config and not self.tasks:
            self.state = SECONDARY
            self.election_deadline = self._new_deadline()
            if self._voters() == 1:
                self.stand_now = True
            self.tasks = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._elections()),
                          asyncio.create_task(self._sync())]

    async def stop(self):
        self.stopping = True
        for t in self.tasks:
            t.cancel()
        for m in self.members.values():
            m.client.close()
            m.sync_client.close()

    # --- helpers -------------------------------------------------------------------------
    def _new_deadline(self):
        return time.monotonic() + ELECTION_TIMEOUT + random.uniform(0, ELECTION_TIMEOUT * 0.15)

    def my_cfg(self):
        for m in self.config["members"]:
            if m["_id"] == self.self_id:
                return m
        return None

    def host_of(self, mid):
        for m in self.config["members"]:
            if m["_id"] == mid:
                return m["host"]
        return None

    def _voters(self):
        return sum(1 for m in self.config["members"] if m.get("votes", 1))

    def majority(self):
        return self._voters() // 2 + 1

    def _electable(self):
        me = self.my_cfg()
        return (me is not None and me.get("priority", 1) > 0 and me.get("votes", 1)
                and not me.get("arbiterOnly") and time.monotonic() >= self.freeze_until)

    def _observe_term(self, term: int, why: str):
        if term > self.term:
            self.term = term
            self.save()
            if self.state == PRIMARY:
                self._step_down(f"a newer term was seen ({why})")

    def _step_down(self, reason: str):
        if self.state == PRIMARY:
            self.log("I", "REPL", 21358, "Replica set state transition",
                     {"newState": "SECONDARY", "oldState": "PRIMARY", "reason": reason})
        self.state = SECONDARY
        if self.primary_id == self.self_id:
            self.primary_id = None
        self.election_deadline = self._new_deadline()
        self.server.on_state_change()

    def _adopt_config(self, cfg: dict, self_host: str | None = None, self_id=None):
        if self_id is None:
            for m in cfg["members"]:
                if m["host"] == self_host:
                    self_id = m["_id"]
        if self_id is None:
            return False
        first = self.config is None
        self.config = cfg
        self.self_id = self_id
        if cfg.get("term", -1) > self.term:
            self.term = cfg["term"]
        self.save()
        self._set_members()
        self.log("I", "REPL", 21392, "New replica set config in use", {"config": {"_id": cfg["_id"], "version": cfg["version"]}})
        if first:
            self.start()
        self.hb_wake.set()
        return True

    # --- heartbeats ------------------------------------------------------------------------
    def heartbeat_request(self, target: str, check_empty=False) -> dict:
        req = {"replSetHeartbeat": self.set_name, "target": target, "term": Int64(self.term),
               "from": self.my_cfg()["host"] if self.config else "", "fromId": self.self_id,
               "configVersion": self.config["version"] if self.config else -2,
               "state": self.state, "optime": optime_doc(self.store.last)}
        if check_empty:
            req["checkEmpty"] = True
        if self.config:
            req["config"] = self.config
        return req

    async def _heartbeats(self):
        while not self.stopping:
            if self.config:
                await asyncio.gather(*(self._heartbeat_one(m) for m in list(self.members.values())),
                                     return_exceptions=True)
            # a new config or a new primary is announced at once, otherwise every 2 s (MongoDB's default)
            try:
                await asyncio.wait_for(self.hb_wake.wait(), HEARTBEAT_INTERVAL)
            except asyncio.TimeoutError:
                pass
            self.hb_wake.clear()

    async def _heartbeat_one(self, m: Member):
        t0 = time.monotonic()
        m.last_hb = now_utc()
        try:
            r = await m.client.command("admin", self.heartbeat_request(m.cfg["host"]), timeout=HEARTBEAT_TIMEOUT / 2)
        except (PeerError, CommandError) as e:
            if m.health != 0:
                self.log("I", "REPL", 23974, "Heartbeat failed", {"target": m.cfg["host"], "error": str(e)})
            m.health = 0
            m.state = DOWN
            m.message = str(e)
            m.up_since = None
            if self.primary_id == m.cfg["_id"]:
                self.primary_id = None
            return
        m.ping_ms = int((time.monotonic() - t0) * 1000)
        self._record_peer(m, r)
        if "config" in r and self.config and r["config"]["version"] > self.config["version"]:
            self._adopt_config(r["config"], self_id=self.self_id)

    def _record_peer(self, m: Member, r: dict):
        if m.health != 1:
            m.up_since = now_utc()
        m.health = 1
        m.message = ""
        m.last_ok = time.monotonic()
        m.state = r.get("state", UNKNOWN)
        m.term = r.get("term", -1)
        m.optime = {"ts": r["optime"]["ts"], "t": int(r["optime"]["t"])} if "optime" in r else m.optime
        m.optime_wall = r.get("wallTime", m.optime_wall)
        m.config_version = r.get("configVersion", -1)
        m.sync_source = r.get("syncingTo", "")
        m.election_time = r.get("electionTime")
        self._observe_term(int(m.term), f"heartbeat from {m.cfg['host']}")
        if m.state == PRIMARY and m.term >= self.term:
            if self.primary_id != m.cfg["_id"]:
                self.log("I", "REPL", 21215, "Member is now in state PRIMARY", {"hostAndPort": m.cfg["host"]})
            self.primary_id = m.cfg["_id"]
            if self.state != PRIMARY:
                self.election_deadline = self._new_deadline()
        elif self.primary_id == m.cfg["_id"]:
            self.primary_id = None
        self.member_applied[m.cfg["_id"]] = optime_key(m.optime)
        self.applied.set()

    def on_heartbeat(self, req: dict, conn_host: str) -> dict:
        if req.get("replSetHeartbeat") != self.set_name:
            raise CommandError(185, "Our set name did not match", "InconsistentReplicaSetNames")
        if req.get("checkEmpty") and self.config is not None:
            raise CommandError(23, f"'{req.get('target')}' has data already, cannot initiate set.", "AlreadyInitialized")
        cfg = req.get("config")
        if cfg and (self.config is None or cfg["version"] > self.config["version"]) and not req.get("checkEmpty"):
            if cfg["_id"] == self.set_name:
                self._adopt_config(cfg, self_host=req.get("target")) if self.config is None else \
                    self._adopt_config(cfg, self_id=self.self_id)
        if self.config:
            m = self.members.get(req.get("fromId"))
            if m is not None:
                m.last_hb_recv = now_utc()
                m.last_ok = time.monotonic()
                if req.get("state") == PRIMARY and int(req.get("term", -1)) >= self.term:
                    self.primary_id = m.cfg["_id"]
                    m.state = PRIMARY
                    if self.state != PRIMARY:
                        self.election_deadline = self._new_deadline()
            self._observe_term(int(req.get("term", -1)), f"heartbeat from {req.get('from')}")
        r = {"ok": 1.0, "setName": self.set_name, "state": self.state, "term": Int64(self.term),
             "configVersion": self.config["version"] if self.config else -2,
             "optime": optime_doc(self.store.last), "wallTime": self.store.last_wall,
             "syncingTo": self.host_of(self.sync_source) or "" if self.config else ""}
        if self.state == PRIMARY and self.election_time:
            r["electionTime"] = self.election_time
        if self.config and cfg is not None and cfg["version"] < self.config["version"]:
            r["config"] = self.config
        return r

    # --- elections ------------------------------------------------------------------------
    async def _elections(self):
        while not self.stopping:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if self.state == PRIMARY:
                alive = 1 + sum(1 for m in self.members.values()
                                if m.cfg.get("votes", 1) and now - m.last_ok < HEARTBEAT_TIMEOUT)
                if alive >= self.majority():
                    self.last_majority_seen = now
                elif now - self.last_majority_seen > ELECTION_TIMEOUT:
                    self.log("I", "REPL", 21809, "Can't see a majority of the set, relinquishing primary", {})
                    self._step_down("can't see a majority of the set")
                continue
            if self.state != SECONDARY or not self._electable():
                continue
            primary_alive = self.primary_id is not None and self.primary_id in self.members and \
                now - self.members[self.primary_id].last_ok < ELECTION_TIMEOUT
            if primary_alive and not self.stand_now:
                continue
            if self.stand_now or now >= self.election_deadline:
                await self._run_election()

    async def _ask_votes(self, term: int, dry_run: bool) -> int:
        req = {"replSetRequestVotes": 1, "setName": self.set_name, "dryRun": dry_run,
               "term": Int64(term), "candidateIndex": self.self_id,
               "configVersion": self.config["version"], "configTerm": Int64(self.config.get("term", -1)),
               "lastAppliedOpTime": optime_doc(self.store.last)}
        voters = [m for m in self.members.values() if m.cfg.get("votes", 1)]

        async def ask(m):
            try:
                return await m.client.command("admin", req, timeout=3.0)
            except (PeerError, CommandError):
                return None
        results = await asyncio.gather(*(ask(m) for m in voters))
        votes = 1
        for r in results:
            if r is None:
                continue
            if int(r.get("term", -1)) > self.term:
                self._observe_term(int(r["term"]), "vote response")
                return 0
            if r.get("voteGranted"):
                votes += 1
        return votes

    async def _run_election(self):
        self.election_deadline = self._new_deadline()
        was_stand_now = self.stand_now
        if self._voters() > 1:
            if await self._ask_votes(self.term + 1, dry_run=True) < self.majority():
                if not was_stand_now:
                    self.log("I", "ELECTION", 21447, "Not running for primary, we received insufficient votes (dry run)", {})
                else:
                    self.election_deadline = time.monotonic() + 0.5
                return
        self.stand_now = False
        self.term += 1
        self.voted_term, self.voted_for = self.term, self.self_id
        self.save()
        term = self.term
        self.log("I", "ELECTION", 21438, "Conducting an election", {"term": term})
        votes = await self._ask_votes(term, dry_run=False) if self._voters() > 1 else 1
        if votes >= self.majority() and self.term == term and self.state == SECONDARY:
            self._become_primary()
        else:
            self.log("I", "ELECTION", 21446, "Not becoming primary, we received insufficient votes", {"term": term})

    def _become_primary(self):
        self.state = PRIMARY
        self.primary_id = self.self_id
        self.sync_source = None
        self.last_majority_seen = time.monotonic()
        self.store.log_op(self.term, "n", "", {"msg": "new primary"})
        self.election_time = self.store.last["ts"]
        self.election_date = now_utc()
        self.log("I", "REPL", 21331, "Transition to primary complete; database writes are now permitted",
                 {"term": self.term})
        self.new_data.set()
        self.hb_wake.set()
        self.server.on_state_change()

    def on_request_votes(self, req: dict) -> dict:
        term = int(req["term"])
        dry = bool(req.get("dryRun"))

        def answer(granted, reason=""):
            return {"ok": 1.0, "term": Int64(self.term), "voteGranted": granted, "reason": reason}
        if req.get("setName") != self.set_name or self.config is None:
            return answer(False, "candidate's set name differs from mine")
        if req.get("configVersion", -1) < self.config["version"]:
            return answer(False, "candidate's config version differs from mine")
        if term < self.term:
            return answer(False, f"candidate's term ({term}) is lower than mine ({self.term})")
        if not dry:
            self._observe_term(term, "vote request")
        cand = req.get("lastAppliedOpTime")
        if cand is not None and optime_key({"t": int(cand["t"]), "ts": cand["ts"]}) < optime_key(self.store.last):
            return answer(False, "candidate's data is staler than mine")
        if not dry:
            if self.voted_term == term and self.voted_for != req.get("candidateIndex"):
                return answer(False, f"already voted for another candidate in term {term}")
            self.voted_term, self.voted_for = term, req.get("candidateIndex")
            self.save()
            self.election_deadline = self._new_deadline()
        elif self.state == PRIMARY and term <= self.term + 1 and self._sees_majority():
            return answer(False, "I am the primary and I can see a majority")
        return answer(True)

    def _sees_majority(self):
        now = time.monotonic()
        return 1 + sum(1 for m in self.members.values() if now - m.last_ok < HEARTBEAT_TIMEOUT) >= self.majority()

    def step_down(self, secs: float):
        if self.state != PRIMARY:
            raise CommandError(10107, "not primary so can't step down", "NotWritablePrimary")
        self.freeze_until = time.monotonic() + secs
        self._step_down("replSetStepDown command")

    # --- replication --------------------------------------------------------------------
    async def _sync(self):
        while not self.stopping:
            if self.state == PRIMARY or self.primary_id is None or self.primary_id not in self.members:
                self.sync_source = None
                await asyncio.sleep(0.2)
                continue
            m = self.members[self.primary_id]
            self.sync_source = self.primary_id
            try:
                r = await m.sync_client.command("admin", {"_rsPull": 1, "after": optime_doc(self.store.last),
                                                     "memberId": self.self_id, "wait": 1.0}, timeout=5.0)
                if r.get("resync"):
                    self.log("I", "REPL", 21173, "Starting initial sync (full copy from the primary)",
                             {"syncSource": m.cfg["host"]})
                    self.state = STARTUP2
                    snap = await m.sync_client.command("admin", {"_rsSnapshot": 1}, timeout=60.0)
                    self.store.load_dump(snap["collections"], {"ts": snap["last"]["ts"], "t": int(snap["last"]["t"])})
                    self.state = SECONDARY
                    self.log("I", "REPL", 21192, "Initial sync done", {})
                    continue
                for e in r["entries"]:
                    e["t"] = int(e["t"])
                    self.store.apply(e)
                if r["entries"]:
                    self.server.on_data()
            except (PeerError, CommandError) as e:
                self.state = SECONDARY if self.state == STARTUP2 else self.state
                self.log("I", "REPL", 21080, "Sync source unreachable", {"error": str(e)})
                await asyncio.sleep(0.5)

    async def on_pull(self, req: dict) -> dict:
        if self.state != PRIMARY:
            raise CommandError(10107, "not primary", "NotWritablePrimary")
        after = {"ts": req["after"]["ts"], "t": int(req["after"]["t"])}
        mid = req.get("memberId")
        if mid is not None:
            self.member_applied[mid] = optime_key(after)
            self.applied.set()
            if mid in self.members:
                self.members[mid].last_ok = time.monotonic()
        entries = self.store.entries_after(after)
        if entries is None:
            return {"ok": 1.0, "resync": True}
        if not entries:
            self.new_data.clear()
            try:
                await asyncio.wait_for(self.new_data.wait(), float(req.get("wait", 1.0)))
            except asyncio.TimeoutError:
                pass
            entries = self.store.entries_after(after) or []
        return {"ok": 1.0, "entries": [dict(e, t=Int64(e["t"])) for e in entries[:1000]]}

    def on_snapshot(self) -> dict:
        return {"ok": 1.0, "collections": self.store.dump(), "last": optime_doc(self.store.last)}

    def notify_write(self):
        self.new_data.set()

    async def wait_for_majority(self, op: dict, timeout: float) -> bool:
        key = optime_key(op)
        deadline = time.monotonic() + timeout
        while True:
            n = 1 + sum(1 for mid, k in self.member_applied.items()
                        if mid in self.members and self.members[mid].cfg.get("votes", 1) and k >= key)
            if n >= self.majority():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self.state != PRIMARY:
                return False
            self.applied.clear()
            try:
                await asyncio.wait_for(self.applied.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    def commit_point(self) -> dict:
        """The newest optime a majority has (approximate lastCommittedOpTime)."""
        keys = sorted([optime_key(self.store.last)] + [self.member_applied.get(mid, (-1, 0, 0))
                                                       for mid in self.members], reverse=True)
        k = keys[self.majority() - 1] if len(keys) >= self.majority() else (-1, 0, 0)
        return {"ts": Timestamp(k[1], k[2]), "t": k[0]}
