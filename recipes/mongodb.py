"""MongoDB: the runbook's replica set section, made safe.

Per host: MongoDB's apt repository and key (or the plan's mirror), the pinned series,
a keyfile shared by the members (0400, owned by mongodb), /etc/mongod.conf bound to
loopback and the private address, mongod enabled and running. Then, once for the
cluster: the replica set initiated with an explicit config (members by hostname),
idempotent the way Ansible's mongodb_replicaset is (`hello`: same set name -> nothing
to do; another name -> error; none -> initiate), a wait for one PRIMARY and the rest
SECONDARY, the admin user through the localhost exception, and a least-privilege
user for Rocket.Chat. Every check reads the host (a stdlib-only probe on mongo1 for
the cluster steps), so a rerun changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex

from wizard import mongo
from recipes.render import TEMPLATES, template
from wizard.engine import Change, Ctx, NoChange, Phase, Step, StepError
from wizard.ops import Cmd, Put

CONF = "/etc/mongod.conf"
DB_PATH = "/var/lib/mongodb"
LOG = "/var/log/mongodb/mongod.log"
PIN = "/etc/apt/preferences.d/mongodb-org.pref"
APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Options::=--force-confold"
RESTART_IF_RUNNING = "if systemctl is-active -q mongod; then systemctl restart mongod; fi"




def series(ctx: Ctx) -> str:
    return ctx.plan.mongodb_version


def _os(ctx: Ctx) -> tuple[str, str]:
    f = ctx.fact("mongo_os").split()
    if len(f) == 2:
        return f[0], f[1]
    return ctx.plan.distro, ctx.plan.codename


def keyring(ver: str) -> str:
    return f"/usr/share/keyrings/mongodb-server-{ver}.gpg"


def list_path(ver: str) -> str:
    return f"/etc/apt/sources.list.d/mongodb-org-{ver}.list"


def apt_source(plan, distro: str, codename: str) -> tuple[str, str]:
    """(sources.list line, key URL): MongoDB's own repository, or the plan's mirror of it."""
    ver = plan.mongodb_version
    if distro == "debian":
        base, suite, comp, arch = "https://repo.mongodb.org/apt/debian", f"{codename}/mongodb-org/{ver}", "main", ""
    else:
        base, suite, comp = "https://repo.mongodb.org/apt/ubuntu", f"{codename}/mongodb-org/{ver}", "multiverse"
        arch = "arch=amd64,arm64 "
    key = f"https://www.mongodb.org/static/pgp/server-{ver}.asc"
    if plan.mirrors.mongodb_apt:
        # A mirror is laid out like repo.mongodb.org/apt/<distro>, its signing key at key.asc.
        base, key = plan.mirrors.mongodb_apt, f"{plan.mirrors.mongodb_apt}/key.asc"
    return f"deb [ {arch}signed-by={keyring(ver)} ] {base} {suite} {comp}\n", key


class AptRepo(Step):
    id = "mongo.apt"
    title = "MongoDB apt repository and signing key"
    roles = ("mongo",)

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        ver = series(ctx)
        return {
            "mongo_os": '. /etc/os-release; echo "$ID $VERSION_CODENAME"',
            "mongo_lists": "grep -H '' /etc/apt/sources.list.d/mongodb-org-*.list 2>/dev/null || true",
            "mongo_keyring": f"test -s {keyring(ver)} && echo yes || echo no",
        }

    def check(self, ctx: Ctx):
        ver = series(ctx)
        line, key_url = apt_source(ctx.plan, *_os(ctx))
        want = f"{list_path(ver)}:{line.strip()}"
        have = [ln for ln in ctx.fact("mongo_lists").splitlines() if ln.strip()]
        ok_key = ctx.fact("mongo_keyring").strip() == "yes"
        if have == [want] and ok_key:
            return NoChange(f"apt source for MongoDB {ver} and its key in place")
        others = sorted({ln.split(":", 1)[0] for ln in have} - {list_path(ver)})
        tmp = keyring(ver) + ".tmp"
        ops = [Cmd("command -v gpg >/dev/null && command -v curl >/dev/null || "
                   f"{{ apt-get -q update && {APT} install -y gnupg curl ca-certificates; }}"),
               Cmd(f"curl -fsSL {shlex.quote(key_url)} | gpg --batch --yes --dearmor -o {tmp}\n"
                   f"mv -f {tmp} {keyring(ver)}\nchmod 644 {keyring(ver)}"),
               Put(list_path(ver), line)]
        if others:
            ops.append(Cmd("rm -f " + " ".join(shlex.quote(o) for o in others)))
        why = "write" if not have else "correct"
        return Change(f"{why} the MongoDB {ver} apt source ({line.split('] ')[1].strip()}) and key",
                      ops + [Cmd("apt-get -q update >/dev/null")])


def pin_text(ver: str) -> str:
    return (f"# rocket-wizard: keep MongoDB on the planned {ver} series\n"
            f"Package: mongodb-org*\nPin: version {ver}.*\nPin-Priority: 1001\n")


class Install(Step):
    id = "mongo.install"
    title = "MongoDB packages, pinned to the planned series"
    roles = ("mongo",)
    facts = {
        "mongo_pkgs": "dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' "
                      "mongodb-org mongodb-org-server 2>/dev/null || true",
        "mongo_pin": f"cat {PIN} 2>/dev/null || true",
    }

    def check(self, ctx: Ctx):
        ver = series(ctx)
        pkgs = {}
        for ln in ctx.fact("mongo_pkgs").splitlines():
            f = ln.split()
            if len(f) >= 3:
                pkgs[f[0]] = (f[1], f[2])
        good = all(p in pkgs and pkgs[p][0].startswith(ver + ".") and pkgs[p][1].startswith("ii")
                   for p in ("mongodb-org", "mongodb-org-server"))
        pin_ok = ctx.fact("mongo_pin").strip() == pin_text(ver).strip()
        if good and pin_ok:
            return NoChange(f"mongodb-org {pkgs['mongodb-org-server'][0]} installed, pinned to {ver}.*")
        ops = [Put(PIN, pin_text(ver))]
        if not good:
            ops.append(Cmd(f"{APT} install -y mongodb-org mongodb-org-server"))
        have = pkgs.get("mongodb-org-server", ("none",))[0]
        return Change(f"install mongodb-org {ver}.* (installed: {have})" if not good
                      else f"pin mongodb-org to {ver}.*", ops)


def new_keyfile() -> str:
    # 756 random bytes -> 1008 base64 characters (MongoDB accepts 6..1024)
    return base64.b64encode(os.urandom(756)).decode()


class Keyfile(Step):
    id = "mongo.keyfile"
    title = "Replica set keyfile: the same secret on every member, 0400, owned by mongodb"
    roles = ("mongo",)
    facts = {"mongo_keyfile": f"stat -c '%U:%G %a' {mongo.KEYFILE} 2>/dev/null && "
                              f"sha256sum < {mongo.KEYFILE} | cut -d' ' -f1"}

    def check(self, ctx: Ctx):
        key = ctx.secrets.get_or_create(mongo.SECRET_KEYFILE, new_keyfile)
        content = key + "\n"
        want = ["mongodb:mongodb 400", hashlib.sha256(content.encode()).hexdigest()]
        have = ctx.fact("mongo_keyfile").split("\n")
        have = [h.strip() for h in have if h.strip()]
        if have == want:
            return NoChange(f"{mongo.KEYFILE} matches the deployment's key, 0400 mongodb")
        why = "write" if not have else ("fix owner/mode of" if len(have) == 2 and have[1] == want[1] else "replace")
        return Change(f"{why} {mongo.KEYFILE} (restart mongod if it runs)",
                      [Cmd("install -d -o root -g mongodb -m 0750 /etc/mongodb"),
                       Put(mongo.KEYFILE, content, mode=0o400, owner="mongodb", group="mongodb", secret=True),
                       Cmd(RESTART_IF_RUNNING)])


def mongod_conf(ctx: Ctx) -> str:
    if not ctx.host.private_ip:
        raise StepError(f"{ctx.host.name} has no private address: mongod would have nothing to bind for its peers")
    return template("mongod.conf.tmpl", db_path=DB_PATH, port=mongo.PORT,
                    bind_ip=f"127.0.0.1,{ctx.host.private_ip}", replset=mongo.REPLSET, keyfile=mongo.KEYFILE)


class Config(Step):
    id = "mongo.config"
    title = "/etc/mongod.conf: loopback + private address, replica set, keyfile, authorization"
    roles = ("mongo",)
    facts = {"mongo_conf": f"cat {CONF} 2>/dev/null || true",
             "mongo_dbpath": f"stat -c '%U:%G' {DB_PATH} 2>/dev/null || true"}

    def check(self, ctx: Ctx):
        want = mongod_conf(ctx)
        conf_ok = ctx.fact("mongo_conf").strip() == want.strip()
        dir_ok = ctx.fact("mongo_dbpath").strip() == "mongodb:mongodb"
        if conf_ok and dir_ok:
            return NoChange(f"{CONF} as planned (bindIp 127.0.0.1,{ctx.host.private_ip}, {mongo.REPLSET})")
        ops = [Cmd(f"install -d -o mongodb -g mongodb -m 0750 {DB_PATH}")]
        what = []
        if not conf_ok:
            ops.append(Put(CONF, want))
            what.append(f"write {CONF}")
        if not dir_ok:
            what.append(f"own {DB_PATH} by mongodb")
        ops.append(Cmd(RESTART_IF_RUNNING))
        return Change(", ".join(what) + " (restart mongod if it runs)", ops)


class Service(Step):
    id = "mongo.service"
    title = "mongod enabled and running"
    roles = ("mongo",)
    facts = {"mongo_unit": "systemctl is-enabled mongod 2>/dev/null; systemctl is-active mongod 2>/dev/null; "
                           f"ss -Hltn 'sport = :{mongo.PORT}' 2>/dev/null | awk '{{print $4}}' | sort | tr '\\n' ' '"}

    def check(self, ctx: Ctx):
        lines = (ctx.fact("mongo_unit").splitlines() + ["", "", ""])[:3]
        enabled, active, listening = lines[0].strip(), lines[1].strip(), lines[2].split()
        want_listen = {f"127.0.0.1:{mongo.PORT}", f"{ctx.host.private_ip}:{mongo.PORT}"}
        if enabled == "enabled" and active == "active" and set(listening) == want_listen:
            return NoChange(f"mongod enabled, running, listening on {' '.join(sorted(listening))}")
        why = []
        if enabled != "enabled":
            why.append("enable")
        if active != "active":
            why.append(f"start ({active or 'unknown'})")
        elif set(listening) != want_listen:
            why.append(f"restart (listening on {' '.join(listening) or 'nothing'})")
        action = "restart" if active == "active" else "start"
        # Wait for the port; on failure print mongod's own error as the last line.
        script = f"""systemctl enable -q mongod
systemctl {action} mongod
i=0
while [ $i -lt 120 ]; do
  if ss -Hltn 'sport = :{mongo.PORT}' | grep -q '127.0.0.1:{mongo.PORT}'; then exit 0; fi
  if ! systemctl is-active -q mongod && [ $i -gt 4 ]; then break; fi
  i=$((i+1)); sleep 0.5
done
systemctl --no-pager -n 0 status mongod || true
tail -n 5 {LOG} 2>/dev/null || true
why=$(grep -E '"s": ?"(E|F)"|security file|Failed to set up listener|DBException' {LOG} 2>/dev/null | tail -n1)
echo "mongod is not listening on 127.0.0.1:{mongo.PORT}: ${{why:-see {LOG} and journalctl -u mongod}}"
exit 1"""
        return Change(", ".join(why) + " mongod", [Cmd(script)])


# ---------------------------------------------------------------- cluster steps (run on mongo1)


PROBE = (TEMPLATES / "mongo_probe.py").read_text()


def probe_command(ctx: Ctx) -> str:
    creds = [[mongo.ADMIN_USER, "admin", ctx.secrets.get_or_create(mongo.SECRET_ADMIN)],
             [mongo.APP_USER, mongo.APP_DB, ctx.secrets.get_or_create(mongo.SECRET_APP)]]
    code = f"CREDS = {json.dumps(creds)}\nPORT = {mongo.PORT}\n" + PROBE
    return f"python3 - <<'__RW_PROBE__'\n{code}\n__RW_PROBE__"


def probe(ctx: Ctx) -> dict:
    """The probe's JSON; {"error": ...} when mongod does not answer (e.g. plan mode, fresh hosts)."""
    raw = ctx.fact("mongo_probe").strip().splitlines()
    try:
        data = json.loads(raw[-1]) if raw else {}
    except ValueError:
        data = {}
    if "hello" not in data:
        data = {"error": data.get("error") or (raw[-1] if raw else "no output"), "auth": {}}
    return data


def _conn(ctx: Ctx, name: str):
    """The SSH connection to another host of the deployment."""
    return ctx.conn_to(ctx.inventory.get(name))


class ClusterStep(Step):
    roles = ("mongo",)
    once = True

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return {"mongo_probe": probe_command(ctx)}


def _short(host: str | None) -> str:
    return (host or "").rsplit(":", 1)[0]


class ReplicaSet(ClusterStep):
    id = "mongo.replset"
    title = f"Replica set {mongo.REPLSET}: initiate once with every member by hostname"

    def check(self, ctx: Ctx):
        p = probe(ctx)
        planned = mongo.replset_config(ctx.inventory)
        want_hosts = sorted(m["host"] for m in planned["members"])
        if "error" in p:
            return Change(f"initiate replica set {mongo.REPLSET} with {', '.join(want_hosts)} "
                          f"(mongod does not answer yet: {p['error']})", data=planned)
        hello = p["hello"]
        name = hello.get("setName")
        if name == mongo.REPLSET:
            if sorted(hello.get("hosts") or []) != want_hosts:
                raise StepError(f"replica set {name} has members {', '.join(sorted(hello.get('hosts') or []))}, "
                                f"the plan has {', '.join(want_hosts)}: changing members is not automated")
            prim = _short(hello.get("primary")) or "none yet"
            return NoChange(f"replica set {name} exists with {len(want_hosts)} members (primary: {prim})")
        if name:
            raise StepError(f"{ctx.host.name} already belongs to replica set {name!r}, not {mongo.REPLSET!r}: "
                            "refusing to touch another set")
        return Change(f"initiate replica set {mongo.REPLSET} with {', '.join(want_hosts)}", data=planned)

    async def apply(self, ctx: Ctx, change: Change) -> None:
        cfg = change.data
        async with mongo.Forwarded(ctx.conn) as f:
            try:
                await f.command("admin", {"replSetInitiate": cfg})
            except mongo.OperationFailure as e:
                if e.code == 23:      # AlreadyInitialized: another run got there first
                    ctx.log("replica set already initialized")
                else:
                    hint = (" (check that every member resolves the others by name in /etc/hosts, that ufw "
                            "lets the peers reach port 27017, and that all members share the keyfile)"
                            if e.code in (74, 93) else "")
                    raise StepError(f"replSetInitiate failed ({e.code} {e.details.get('codeName', '')}): "
                                    f"{e.details.get('errmsg', e)}{hint}") from None
        await wait_for_members(ctx, timeout=180)


async def member_hellos(ctx: Ctx) -> dict[str, dict | str]:
    """Unauthenticated `hello` on every member, through mongo1's SSH connection (the peers
    admit mongo1's private address; mongo1 itself is asked on 127.0.0.1)."""
    out: dict[str, dict | str] = {}

    async def one(h):
        target = "127.0.0.1" if h.name == ctx.host.name else h.private_ip
        try:
            async with mongo.Forwarded(ctx.conn, target, timeout_ms=3000) as f:
                out[h.name] = await f.hello()
        except Exception as e:
            out[h.name] = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    import asyncio
    await asyncio.gather(*(one(h) for h in ctx.inventory.by_role("mongo")))
    return out


def _state(h: dict | str) -> str:
    if isinstance(h, str):
        return "unreachable"
    if h.get("isWritablePrimary"):
        return "PRIMARY"
    if h.get("secondary"):
        return "SECONDARY"
    return "STARTUP" if not h.get("setName") else "RECOVERING/STARTUP2"


async def wait_for_members(ctx: Ctx, timeout: float) -> str:
    names = [h.name for h in ctx.inventory.by_role("mongo")]

    async def check():
        hellos = await member_hellos(ctx)
        states = {n: _state(hellos[n]) for n in names}
        done = sum(s == "PRIMARY" for s in states.values()) == 1 and \
            all(s in ("PRIMARY", "SECONDARY") for s in states.values())
        return done, "members: " + ", ".join(f"{n} {states[n]}" for n in names)
    try:
        return await mongo.wait_until(check, timeout, 1.0, ctx.progress if hasattr(ctx, "progress") else ctx.log)
    except TimeoutError as e:
        raise StepError(f"no healthy replica set after {timeout:.0f} s: {e}") from None


async def primary_name(ctx: Ctx) -> str:
    hellos = await member_hellos(ctx)
    for n, h in hellos.items():
        if isinstance(h, dict) and h.get("isWritablePrimary"):
            return n
    raise StepError("no member is PRIMARY: " + ", ".join(f"{n} {_state(h)}" for n, h in hellos.items()))


class AdminUser(ClusterStep):
    id = "mongo.admin_user"
    title = "Admin user, created through the localhost exception on the primary"

    def check(self, ctx: Ctx):
        p = probe(ctx)
        res = p["auth"].get(f"{mongo.ADMIN_USER}@admin")
        if res == "ok":
            return NoChange(f"user {mongo.ADMIN_USER}@admin authenticates (SCRAM-SHA-256)")
        return Change(f"create {mongo.ADMIN_USER}@admin (root) through the localhost exception")

    async def apply(self, ctx: Ctx, change: Change) -> None:
        prim = await primary_name(ctx)
        pw = ctx.secrets.get_or_create(mongo.SECRET_ADMIN)
        # A forward to the primary's own 127.0.0.1 arrives from localhost: the exception applies
        # there and only while no user exists at all.
        async with mongo.Forwarded(_conn(ctx, prim)) as f:
            try:
                await f.command("admin", {"createUser": mongo.ADMIN_USER, "pwd": pw, "roles": ["root"],
                                          "writeConcern": {"w": "majority", "wtimeout": 60000}})
            except mongo.OperationFailure as e:
                if e.code == 13:
                    raise StepError("users already exist but the admin password in the secrets does not "
                                    "authenticate: the localhost exception is closed; restore "
                                    f"{mongo.SECRET_ADMIN} in secrets.toml") from None
                raise StepError(f"createUser admin failed ({e.code}): {e.details.get('errmsg', e)}") from None
        ctx.log(f"created {mongo.ADMIN_USER}@admin on {prim}")


def app_user_line() -> str:
    roles = ",".join(sorted(f"{r['role']}@{r['db']}" for r in mongo.APP_ROLES))
    return f"{mongo.APP_USER}@{mongo.APP_DB} {roles}"


class AppUser(ClusterStep):
    id = "mongo.app_user"
    title = "Rocket.Chat user: readWrite on its own database only"

    def check(self, ctx: Ctx):
        p = probe(ctx)
        if p["auth"].get(f"{mongo.ADMIN_USER}@admin") != "ok":
            # no admin yet (plan mode on fresh hosts): no user can exist
            return Change(f"create {app_user_line()}", data="create")
        if "users" not in p:
            raise StepError(f"cannot list the users on {ctx.host.name}: {p.get('users_error') or p.get('error')}")
        users = p.get("users", [])
        auth = p["auth"].get(f"{mongo.APP_USER}@{mongo.APP_DB}")
        mine = [u for u in users if u.startswith(f"{mongo.APP_USER}@{mongo.APP_DB} ")]
        if auth == "ok" and mine == [app_user_line()]:
            return NoChange(f"{app_user_line()} exists and authenticates")
        if not mine:
            return Change(f"create {app_user_line()}", data="create")
        return Change(f"update {mongo.APP_USER}@{mongo.APP_DB} (password or roles differ)", data="update")

    async def apply(self, ctx: Ctx, change: Change) -> None:
        prim = await primary_name(ctx)
        pw = ctx.secrets.get_or_create(mongo.SECRET_APP)
        wc = {"w": "majority", "wtimeout": 60000}
        async with mongo.Forwarded(_conn(ctx, prim), username=mongo.ADMIN_USER,
                                   password=ctx.secrets.get_or_create(mongo.SECRET_ADMIN)) as f:
            if change.data == "create":
                await f.command(mongo.APP_DB, {"createUser": mongo.APP_USER, "pwd": pw,
                                               "roles": mongo.APP_ROLES, "writeConcern": wc})
            else:
                await f.command(mongo.APP_DB, {"updateUser": mongo.APP_USER, "pwd": pw,
                                               "roles": mongo.APP_ROLES, "writeConcern": wc})


class Healthy(ClusterStep):
    id = "mongo.healthy"
    title = "Replica set healthy: one PRIMARY, the rest SECONDARY"

    def check(self, ctx: Ctx):
        p = probe(ctx)
        members = p.get("members")
        if not members:
            return Change("wait for the members (status not readable yet: "
                          f"{p.get('error') or p['auth'].get(mongo.ADMIN_USER + '@admin')})")
        states = [m["state"] for m in members]
        summary = ", ".join(f"{_short(m['name'])} {m['state']}" for m in members)
        if states.count("PRIMARY") == 1 and all(s in ("PRIMARY", "SECONDARY") for s in states) \
                and all(m["health"] == 1 for m in members):
            return NoChange(f"{mongo.REPLSET}: {summary}")
        return Change(f"wait for the members ({summary})")

    async def apply(self, ctx: Ctx, change: Change) -> None:
        await wait_for_members(ctx, timeout=180)


PHASE = Phase("mongodb", "MongoDB replica set", [
    AptRepo(), Install(), Keyfile(), Config(), Service(),
    ReplicaSet(), AdminUser(), AppUser(), Healthy(),
])


async def status_probe(deployment, runner, out) -> None:
    """The status board's MongoDB lines: each member's state, health and lag."""
    from wizard.deploy import MemberStatus
    members = await mongo.member_status(runner.plan, runner.inventory, runner.store.secrets, runner.connection)
    out.mongo = [MemberStatus(m.name, m.state, m.health, m.lag_s) for m in members]
