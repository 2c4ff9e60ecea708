"""Rocket.Chat on the web hosts: Node, Deno, the release bundle, one systemd instance per port.

The runbook's "install Node 0.10 and forever-service" becomes, for today's releases
(RocketChat/docs manual-installation; shared/notes/facts.md):

- the Node and Deno versions the release server names for the release
  (wizard.releases), from the official tarballs or plan.mirrors;
- the tarball, ``npm install --production`` in bundle/programs/server, installed
  to /opt/Rocket.Chat/<version> with a ``current`` link (``previous`` keeps the
  last one, so an upgrade rolls back by moving the link back);
- a locked ``rocketchat`` system user; the code stays root-owned and read-only;
- a systemd template unit ``rocketchat@.service``, one instance per port
  (3001, 3002, ...), environment in /etc/rocketchat/ (mode 0600): ROOT_URL,
  PORT, MONGO_URL, BIND_IP, INSTANCE_IP, TCP_PORT (pinned: port + 1000, so a
  firewall can allow it between web hosts), HTTP_FORWARDED_COUNT=1, ADMIN_* for
  the first admin, and the setup wizard marked done;
- instances are (re)started one at a time, each waited for on its health
  endpoint (/livez since 7.11, /health before), so a config change or upgrade
  rolls through the instances while the others keep serving.

The MongoDB connection string comes from wizard.mongo.mongo_url(plan,
inventory, secrets) (the MongoDB recipe's module).
"""

from __future__ import annotations

import functools
import hashlib
import shlex
from pathlib import Path
from string import Template

from wizard import releases, versions
from wizard.engine import Change, Ctx, NoChange, Phase, Skip, Step, StepError
from wizard.ops import Cmd, Put

TEMPLATES = Path(__file__).with_name("templates")
RC_ROOT = "/opt/Rocket.Chat"
ENV_DIR = "/etc/rocketchat"
UNIT_PATH = "/etc/systemd/system/rocketchat@.service"
SHARED_ENV = f"{ENV_DIR}/rocketchat.env"
ADMIN_SECRET = "rocketchat_admin_password"
TCP_PORT_OFFSET = 1000
HEALTH_TIMEOUT = 300        # seconds per instance: a real 8.x boots in 30-90 s on 2 vCPU
MARKER = ".rocket-wizard"


# ---------------------------------------------------------------- shared facts
def tcp_port(port: int) -> int:
    """The pinned instance-to-instance port of the instance on ``port``."""
    return port + TCP_PORT_OFFSET


@functools.lru_cache(maxsize=8)
def _resolve(version: str, base: str, node: str, deno: str, mongo: str) -> releases.Release:
    plan = _PlanView(version, base, node, deno, mongo)
    return releases.resolve(plan)


class _PlanView:
    """The few plan fields release resolution reads (hashable cache key above)."""

    def __init__(self, version, base, node, deno, mongo):
        self.rocketchat_version = version
        self.mongodb_version = mongo
        self.mirrors = type("M", (), {"rocketchat_releases": base, "node": node, "deno": deno})()


def release_for(plan) -> releases.Release:
    """The plan's release as the release server describes it (cached per run).

    Blocking (one HTTP request the first time): the deploy resolves it in a worker
    thread before the first phase, which also refuses an incompatible plan before
    anything is created.
    """
    m = plan.mirrors
    return _resolve(plan.rocketchat_version, releases.releases_base(plan),
                    m.node or "", m.deno or "", plan.mongodb_version)


def node_dir(rel: releases.Release) -> str:
    return f"/opt/node/v{rel.node}"


def deno_dir(rel: releases.Release) -> str | None:
    return f"/opt/deno/v{rel.deno}" if rel.deno else None


def health_path(version: str) -> str:
    return "/livez" if versions.parse_version(version) >= (7, 11, 0) else "/health"


def web_hosts(ctx: Ctx):
    return ctx.inventory.by_role("web")


def bind_ip(plan, host) -> str:
    """Loopback with one web host (only its nginx talks to the instances); the
    private address when nginx must reach instances on other web hosts."""
    if plan.app_hosts == 1:
        return "127.0.0.1"
    return host.private_ip or "127.0.0.1"


def instance_ip(host) -> str:
    return host.private_ip or host.public_ip or "127.0.0.1"


def mongo_url_for(ctx: Ctx) -> str:
    """MONGO_URL: every member, replicaSet, authSource and the application user."""
    try:
        from wizard.mongo import mongo_url
    except ImportError as e:     # the MongoDB recipe's module is not installed
        raise StepError(f"cannot build MONGO_URL: wizard.mongo is missing ({e})") from None
    return mongo_url(ctx.plan, ctx.inventory, ctx.secrets)


def _q(value: str) -> str:
    """A value for a systemd EnvironmentFile line (double-quoted, escaped)."""
    if any(c in value for c in "\n\r"):
        raise StepError("an environment value contains a line break")
    if value and all(c.isalnum() or c in "-_.,:/@?&=%+~" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def render_env(ctx: Ctx, rel: releases.Release) -> str:
    plan = ctx.plan
    path = ":".join(p for p in (f"{node_dir(rel)}/bin", deno_dir(rel),
                                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") if p)
    admin_pass = ctx.secrets.get_or_create(ADMIN_SECRET)
    values = {
        "path": path,
        "root_url": f"https://{plan.domain}",
        "mongo_url": mongo_url_for(ctx),
        "bind_ip": bind_ip(plan, ctx.host),
        "instance_ip": instance_ip(ctx.host),
        "admin_username": plan.admin_username,
        "admin_name": "Administrator",
        "admin_email": plan.admin_email,
        "admin_pass": admin_pass,
    }
    tmpl = Template((TEMPLATES / "rocketchat.env.tmpl").read_text())
    return tmpl.substitute({k: _q(v) for k, v in values.items()})


def render_instance_env(port: int) -> str:
    return ("# Rocket.Chat instance settings. Written by rocket-wizard.\n"
            f"PORT={port}\nTCP_PORT={tcp_port(port)}\n")


def render_unit(rel: releases.Release) -> str:
    return Template((TEMPLATES / "rocketchat@.service").read_text()).safe_substitute(
        node_bin=f"{node_dir(rel)}/bin/node")


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _download(url: str, dest: str) -> str:
    return f"curl -fsSL --retry 3 --connect-timeout 20 -o {dest} {shlex.quote(url)}"


# ---------------------------------------------------------------- steps
class WebStep(Step):
    roles = ("web",)


class User(WebStep):
    id = "rocketchat.user"
    title = "A locked system user 'rocketchat' runs Rocket.Chat"
    facts = {"rc_user": "getent passwd rocketchat; echo; getent shadow rocketchat | cut -d: -f2"}

    def check(self, ctx: Ctx):
        out = ctx.fact("rc_user")
        lines = [x for x in out.splitlines() if x.strip()]
        if lines and lines[0].startswith("rocketchat:") and lines[0].endswith(":/usr/sbin/nologin") \
                and len(lines) > 1 and lines[1].startswith(("!", "*")):
            return NoChange("user rocketchat exists, locked, no login shell")
        ops = []
        if not lines or not lines[0].startswith("rocketchat:"):
            ops.append(Cmd(f"useradd --system --user-group --home-dir {RC_ROOT} --no-create-home "
                           "--shell /usr/sbin/nologin rocketchat"))
        ops.append(Cmd("usermod --shell /usr/sbin/nologin rocketchat && passwd -l rocketchat >/dev/null"))
        return Change("create the locked system user rocketchat", ops)


class Node(WebStep):
    id = "rocketchat.node"
    title = "Node.js as the release names it (official tarball, checksum verified)"

    def describe(self, plan) -> str:
        return f"Node.js for Rocket.Chat {plan.rocketchat_version} (official tarball, checksum verified)"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        rel = release_for(ctx.plan)
        return {"rc_node": f"{node_dir(rel)}/bin/node --version 2>/dev/null || true"}

    def check(self, ctx: Ctx):
        rel = release_for(ctx.plan)
        if ctx.fact("rc_node").strip() == f"v{rel.node}":
            return NoChange(f"Node {rel.node} in {node_dir(rel)}")
        dist = releases.node_dist(ctx.plan)
        name = f"node-v{rel.node}-linux-x64.tar.gz"
        script = f"""
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{_download(rel.node_url(dist), '"$tmp/$name"'.replace('$name', name))}
{_download(rel.node_shasums_url(dist), '"$tmp/SHASUMS256.txt"')}
want=$(awk '$2 == "{name}" {{print $1}}' "$tmp/SHASUMS256.txt")
[ -n "$want" ] || {{ echo "{name} is not listed in SHASUMS256.txt" >&2; exit 1; }}
echo "$want  $tmp/{name}" | sha256sum -c --quiet
mkdir -p /opt/node
tar -xzf "$tmp/{name}" -C "$tmp"
rm -rf {node_dir(rel)}.new && mv "$tmp/node-v{rel.node}-linux-x64" {node_dir(rel)}.new
chown -R root:root {node_dir(rel)}.new
rm -rf {node_dir(rel)} && mv {node_dir(rel)}.new {node_dir(rel)}
{node_dir(rel)}/bin/node --version
"""
        return Change(f"install Node {rel.node} into {node_dir(rel)}", [Cmd(script)])


class Deno(WebStep):
    id = "rocketchat.deno"
    title = "Deno for the apps engine (Rocket.Chat 7.9 and newer)"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        rel = release_for(ctx.plan)
        if not rel.deno:
            return {}
        return {"rc_deno": f"{deno_dir(rel)}/deno --version 2>/dev/null | head -1 || true"}

    def check(self, ctx: Ctx):
        rel = release_for(ctx.plan)
        if not rel.deno:
            return Skip(f"Rocket.Chat {rel.version} does not need Deno")
        if ctx.fact("rc_deno").startswith(f"deno {rel.deno} "):
            return NoChange(f"Deno {rel.deno} in {deno_dir(rel)}")
        url = rel.deno_url(releases.deno_dist(ctx.plan))
        d = deno_dir(rel)
        script = f"""
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{_download(url, '"$tmp/deno.zip"')}
{_download(url + '.sha256sum', '"$tmp/deno.zip.sha256sum"')}
want=$(grep -oE '[0-9a-f]{{64}}' "$tmp/deno.zip.sha256sum" | head -1)
[ -n "$want" ] || {{ echo "no checksum in {url}.sha256sum" >&2; exit 1; }}
echo "$want  $tmp/deno.zip" | sha256sum -c --quiet
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("deno", sys.argv[2])' "$tmp/deno.zip" "$tmp"
mkdir -p {d}
install -m 0755 -o root -g root "$tmp/deno" {d}/deno
{d}/deno --version | head -1
"""
        return Change(f"install Deno {rel.deno} into {d}", [Cmd(script)])


class Bundle(WebStep):
    id = "rocketchat.bundle"
    title = "The release tarball, npm install --production, in /opt/Rocket.Chat/<version>"

    def describe(self, plan) -> str:
        return f"Rocket.Chat {plan.rocketchat_version} into {RC_ROOT}/{plan.rocketchat_version}"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        rel = release_for(ctx.plan)
        return {"rc_bundle": f"cat {RC_ROOT}/{rel.version}/{MARKER} 2>/dev/null || true"}

    def check(self, ctx: Ctx):
        rel = release_for(ctx.plan)
        if ctx.fact("rc_bundle").startswith(f"installed {rel.version} "):
            return NoChange(f"Rocket.Chat {rel.version} installed in {RC_ROOT}/{rel.version}")
        dest = f"{RC_ROOT}/{rel.version}"
        nd = node_dir(rel)
        script = f"""
mkdir -p {RC_ROOT}
tmp=$(mktemp -d {RC_ROOT}/.download.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
{_download(rel.tarball_url, '"$tmp/rocket.chat.tgz"')}
tar -xzf "$tmp/rocket.chat.tgz" -C "$tmp"
[ -f "$tmp/bundle/main.js" ] && [ -f "$tmp/bundle/programs/server/package.json" ] || {{
  echo "the tarball has no bundle/main.js and bundle/programs/server/package.json" >&2; exit 1; }}
cd "$tmp/bundle/programs/server"
HOME="$tmp" PATH={nd}/bin:$PATH npm install --production --no-audit --no-fund --loglevel=error \\
  --cache "$tmp/npm-cache"
cd /
echo "installed {rel.version} from {rel.tarball_url} $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$tmp/bundle/{MARKER}"
chown -R root:root "$tmp/bundle" && chmod -R u+rwX,go+rX,go-w "$tmp/bundle"
rm -rf {dest} && mv "$tmp/bundle" {dest}
"""
        return Change(f"install Rocket.Chat {rel.version} into {dest}", [Cmd(script)])


class Current(WebStep):
    id = "rocketchat.current"
    title = "/opt/Rocket.Chat/current points at the planned release (previous kept for rollback)"
    facts = {"rc_links": f"readlink {RC_ROOT}/current; echo; readlink {RC_ROOT}/previous; true"}

    def check(self, ctx: Ctx):
        rel = release_for(ctx.plan)
        lines = ctx.fact("rc_links").splitlines()
        current = lines[0].strip() if lines else ""
        if current == rel.version:
            return NoChange(f"current -> {rel.version}")
        ops = []
        if current:
            ops.append(Cmd(f"ln -sfn {shlex.quote(current)} {RC_ROOT}/previous"))
        ops.append(Cmd(f"ln -sfn {rel.version} {RC_ROOT}/.current.new && "
                       f"mv -T {RC_ROOT}/.current.new {RC_ROOT}/current"))
        what = f"{current} -> {rel.version} (rollback: {RC_ROOT}/previous)" if current else rel.version
        return Change(f"switch current to {what}", ops)


class Config(WebStep):
    id = "rocketchat.config"
    title = "systemd template unit rocketchat@.service and its environment (0600)"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return {"rc_config": f"cd / && sha256sum {UNIT_PATH} {ENV_DIR}/*.env 2>/dev/null; "
                             f"stat -c '%a %U %n' {ENV_DIR}/*.env 2>/dev/null; true"}

    def wanted(self, ctx: Ctx) -> dict[str, tuple[str, int]]:
        rel = release_for(ctx.plan)
        files = {UNIT_PATH: (render_unit(rel), 0o644), SHARED_ENV: (render_env(ctx, rel), 0o600)}
        for port in ctx.plan.ports():
            files[f"{ENV_DIR}/instance-{port}.env"] = (render_instance_env(port), 0o600)
        return files

    def check(self, ctx: Ctx):
        have: dict[str, str] = {}
        modes: dict[str, str] = {}
        for line in ctx.fact("rc_config").splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 64:
                have[parts[1]] = parts[0]
            elif len(parts) == 3:
                modes[parts[2]] = f"{parts[0]} {parts[1]}"
        ops, changed = [], []
        for path, (content, mode) in self.wanted(ctx).items():
            secret = path.endswith(".env")
            if have.get(path) != _sha(content) or (secret and modes.get(path) != f"{mode:o} root"):
                ops.append(Put(path, content, mode=mode, secret=secret))
                changed.append(path)
        if UNIT_PATH in changed:
            ops.append(Cmd("systemctl daemon-reload"))
        if not ops:
            return NoChange("unit and environment files as planned")
        return Change("write " + ", ".join(changed), ops)


INSTANCES_FACT = r"""
now=$(date +%s)
cur=$(readlink -f /opt/Rocket.Chat/current 2>/dev/null)
echo "current $cur"
echo "now $now"
for f in /etc/systemd/system/rocketchat@.service /etc/rocketchat/*.env; do
  [ -e "$f" ] && echo "mtime $(stat -c %Y "$f") $f"
done
units=$( (ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null | grep '^rocketchat@';
          systemctl list-units --all --plain --no-legend 'rocketchat@*' 2>/dev/null | awk '{print $1}';
          for p in PORTS; do echo "rocketchat@$p.service"; done) | sort -u)
for u in $units; do
  active=$(systemctl is-active "$u" 2>/dev/null)
  enabled=$(systemctl is-enabled "$u" 2>/dev/null)
  pid=$(systemctl show -p MainPID --value "$u" 2>/dev/null)
  cwd=-; start=0
  if [ -n "$pid" ] && [ "$pid" != 0 ]; then
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null || echo -)
    start=$((now - $(ps -o etimes= -p "$pid" 2>/dev/null || echo 0)))
  fi
  echo "unit $u ${active:-unknown} ${enabled:-unknown} $cwd $start"
done
true
"""


def parse_instances(text: str) -> tuple[str, dict[str, int], dict[int, dict]]:
    current, mtimes, units = "", {}, {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "current" and len(parts) > 1:
            current = parts[1]
        elif parts[0] == "mtime" and len(parts) == 3:
            mtimes[parts[2]] = int(parts[1])
        elif parts[0] == "unit" and len(parts) == 6:
            name = parts[1]
            try:
                port = int(name.removeprefix("rocketchat@").removesuffix(".service"))
            except ValueError:
                continue
            units[port] = {"active": parts[2], "enabled": parts[3], "cwd": parts[4],
                           "start": int(parts[5])}
    return current, mtimes, units


class Instances(WebStep):
    id = "rocketchat.instances"
    title = "One instance per port, enabled, (re)started one at a time, each healthy"

    def describe(self, plan) -> str:
        return f"Rocket.Chat instances on ports {', '.join(map(str, plan.ports()))}, each healthy"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        ports = " ".join(str(p) for p in ctx.plan.ports())
        return {"rc_instances": INSTANCES_FACT.replace("PORTS", ports)}

    def check(self, ctx: Ctx):
        current, mtimes, units = parse_instances(ctx.fact("rc_instances"))
        planned = ctx.plan.ports()
        restart, enable, reasons = [], [], []
        for port in planned:
            u = units.get(port, {"active": "inactive", "enabled": "disabled", "cwd": "-", "start": 0})
            config = [UNIT_PATH, SHARED_ENV, f"{ENV_DIR}/instance-{port}.env"]
            newest = max((mtimes.get(p, 0) for p in config), default=0)
            if u["active"] != "active":
                restart.append(port)
                reasons.append(f"{port} {u['active']}")
            elif current and u["cwd"] != current:
                restart.append(port)
                reasons.append(f"{port} runs {Path(u['cwd']).name}")
            elif newest > u["start"]:
                restart.append(port)
                reasons.append(f"{port} config changed")
            if u["enabled"] != "enabled":
                enable.append(port)
        extra = sorted(p for p, u in units.items() if p not in planned
                       and (u["active"] in ("active", "activating") or u["enabled"] == "enabled"))
        if not (restart or enable or extra):
            return NoChange(f"instances {', '.join(map(str, planned))} running the current release")
        parts = []
        if restart:
            parts.append(f"(re)start {', '.join(map(str, restart))} ({'; '.join(reasons)})")
        if enable and set(enable) - set(restart):
            parts.append(f"enable {', '.join(map(str, enable))}")
        if extra:
            parts.append(f"stop and remove {', '.join(map(str, extra))}")
        return Change("; ".join(parts), [], data={"restart": restart, "enable": enable, "extra": extra})

    async def apply(self, ctx: Ctx, change: Change) -> None:
        plan = ctx.plan
        rel = release_for(plan)
        host = bind_ip(plan, ctx.host)
        path = health_path(rel.version)
        data = change.data
        enable = " ".join(f"rocketchat@{p}.service" for p in data["enable"])
        lines = ["set -e"]
        if enable:
            lines.append(f"systemctl enable --quiet {enable}")
        lines.append(_wait_health_fn(host, path))
        # One at a time: the first start creates the admin (no race between
        # instances) and a rolling restart keeps the others serving.
        for port in data["restart"]:
            lines.append(f"systemctl restart rocketchat@{port}.service")
            lines.append(f"wait_health {port}")
        for port in data["extra"]:
            lines.append(f"systemctl disable --now --quiet rocketchat@{port}.service || true")
            lines.append(f"rm -f {ENV_DIR}/instance-{port}.env")
        await ctx.run("\n".join(lines) + "\n")


def _wait_health_fn(host: str, path: str) -> str:
    return f"""
wait_health() {{
  port=$1; i=0
  while [ $i -lt {HEALTH_TIMEOUT} ]; do
    code=$(curl -s -o /dev/null -m 5 -w '%{{http_code}}' http://{host}:$port{path} || true)
    if [ "$code" = 200 ]; then echo "instance $port healthy ({path})"; return 0; fi
    if [ "$(systemctl show -p NRestarts --value rocketchat@$port.service)" -ge 3 ] 2>/dev/null; then
      break
    fi
    sleep 1; i=$((i + 1))
  done
  echo "instance $port did not answer {path}; its last log lines:" >&2
  journalctl -u rocketchat@$port.service -n 25 --no-pager -o cat >&2 || true
  return 1
}}"""


PHASE = Phase("rocketchat", "Rocket.Chat: Node, Deno, release, systemd instances",
              [User(), Node(), Deno(), Bundle(), Current(), Config(), Instances()])


async def status_probe(deployment, runner, out) -> None:
    """The status board's app lines: each instance's health endpoint, asked on its web host."""
    from wizard.deploy import AppStatus
    plan = runner.plan
    path = health_path(plan.rocketchat_version)
    script = "\n".join(
        f"printf '%s ' {port}; curl -s -o /dev/null -m 3 -w '%{{http_code}} ' http://127.0.0.1:{port}{path}; "
        f"curl -s -m 3 http://127.0.0.1:{port}/api/info | sed -n 's/.*\"version\": *\"\\([^\"]*\\)\".*/\\1/p'; echo"
        for port in plan.ports())
    for host in runner.inventory.by_role("web"):
        if not host.ready:
            continue
        res = await runner.connection(host).run(script, check=False, stream=False)
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                out.apps.append(AppStatus(host.name, int(parts[0]), parts[1] == "200",
                                          parts[2] if len(parts) > 2 else ""))
