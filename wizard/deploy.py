"""A deployment: the plan, its state, its provider and the recipes, in one object.

Both front ends (the headless CLI and the Textual screens) drive a deployment
through this API and nothing else:

    d = Deployment(plan)
    d.review()                      # what will exist and what it costs; changes nothing
    await d.apply(emit)             # provision, then every recipe phase; resumable
    await d.status()                # health of what exists
    d.destroy(progress)             # delete every resource carrying the deployment tag
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable

from . import catalog, cloudinit, hostkeys
from . import events as ev
from .engine import Phase, RunResult, Runner
from .plan import Plan, plan_to_toml
from .providers.base import HostSpec, Machine, Provider, ProviderError
from .ssh import Connection, SSHError
from .state import StateStore

SSH_READY_TIMEOUT = 300.0
ADMIN_PASSWORD_SECRET = "rocketchat_admin_password"     # written by recipes/rocketchat.py


# ---------------------------------------------------------------- review


@dataclass
class ReviewHost:
    name: str
    role: str
    size: str
    price_monthly: float
    installs: list[str]


@dataclass
class Review:
    hosts: list[ReviewHost]
    droplets_monthly: float
    backups_monthly: float
    total_monthly: float
    priced_live: bool
    prices_checked: str
    notes: list[str] = field(default_factory=list)
    url: str = ""


def installs_for(plan: Plan, role: str) -> list[str]:
    common = ["hardening: ufw, fail2ban, unattended upgrades, sudo user, key-only SSH"]
    if role == "mongo":
        thp = "THP on (MongoDB 8)" if plan.mongodb_version.startswith("8") else "THP off"
        return common + [f"MongoDB {plan.mongodb_version} (replica set rs0, keyFile auth, {thp})"]
    ports = ", ".join(str(p) for p in plan.ports())
    return common + [
        f"Rocket.Chat {plan.rocketchat_version} x{plan.instances} under systemd (ports {ports})",
        "nginx reverse proxy, Let's Encrypt TLS (1.2/1.3, HSTS)",
    ]


def licence_notes(plan: Plan) -> list[str]:
    notes = []
    if plan.needs_scalability_licence:
        notes.append(
            f"{plan.instances * plan.app_hosts} Rocket.Chat instances stay in sync only with a licence "
            "that includes the scalability module; without it, users on different instances miss "
            "each other's live updates. The cost estimate counts the licence."
        )
    if plan.trial:
        notes.append("Trial plan: one MongoDB member (a single-member replica set) has no failover.")
    return notes


# ---------------------------------------------------------------- status


@dataclass
class HostStatus:
    name: str
    role: str
    reachable: bool
    load: float | None = None
    mem_used_pct: float | None = None
    disk_used_pct: float | None = None
    error: str = ""


@dataclass
class MemberStatus:
    name: str
    state: str
    health: int
    lag_s: float | None


@dataclass
class AppStatus:
    host: str
    port: int
    healthy: bool
    version: str = ""


@dataclass
class ClusterStatus:
    hosts: list[HostStatus] = field(default_factory=list)
    mongo: list[MemberStatus] = field(default_factory=list)
    apps: list[AppStatus] = field(default_factory=list)
    cert_days_left: int | None = None
    monthly_cost: float = 0.0
    checked_at: float = field(default_factory=time.time)


STATUS_SCRIPT = r"""
read l1 l5 l15 rest < /proc/loadavg; echo "load $l1"
awk '/MemTotal/{t=$2}/MemAvailable/{a=$2}END{if(t)printf "mem %.1f\n",(t-a)*100/t}' /proc/meminfo
df -P / | awk 'NR==2{sub("%","",$5); print "disk "$5}'
"""


def parse_status(name: str, role: str, out: str) -> HostStatus:
    hs = HostStatus(name, role, True)
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        try:
            if k == "load":
                hs.load = float(v)
            elif k == "mem":
                hs.mem_used_pct = float(v)
            elif k == "disk":
                hs.disk_used_pct = float(v)
        except ValueError:
            continue
    return hs


# ---------------------------------------------------------------- deployment


def default_phases() -> list[Phase]:
    from recipes import PHASES
    return list(PHASES)


class Deployment:
    def __init__(self, plan: Plan, store: StateStore | None = None, provider: Provider | None = None,
                 phases: list[Phase] | None = None, token: Callable[[], str] | None = None):
        self.plan = plan
        self.store = store or StateStore(plan.name)
        self._provider = provider
        self._phases = phases
        self._token = token
        self.check_release = True       # tests of single phases may turn the release check off

    # -- pieces, made on demand so `review` works with no token and no network
    @property
    def provider(self) -> Provider:
        if self._provider is None:
            from .providers import make_provider
            self._provider = make_provider(self.plan, token=self._token)
        return self._provider

    @property
    def phases(self) -> list[Phase]:
        if self._phases is None:
            self._phases = default_phases()
        return self._phases

    # -- review (Terraform's plan): readable before anything costs money
    def review(self, prices: dict[str, float] | None = None) -> Review:
        live = prices is not None
        hosts = []
        for name, role in self.plan.hosts():
            size = self.plan.size_of(role)
            price = (prices or {}).get(size.slug, size.price_monthly)
            hosts.append(ReviewHost(name, role, size.slug, price, installs_for(self.plan, role)))
        droplets = sum(h.price_monthly for h in hosts)
        backups = round(droplets * catalog.BACKUP_SHARE[self.plan.backups], 2)
        return Review(hosts, droplets, backups, round(droplets + backups, 2), live, catalog.PRICES_CHECKED,
                      licence_notes(self.plan), f"https://{self.plan.domain}")

    def plan_hash(self) -> str:
        return hashlib.sha256(plan_to_toml(self.plan).encode()).hexdigest()[:16]

    # -- apply
    async def apply(self, emit: ev.Emit | None = None, *, resume: bool = True,
                    phases: list[Phase] | None = None, provision: bool = True) -> RunResult:
        self.store.state.provider = self.plan.provider
        self.store.state.plan_hash = self.plan_hash()
        runner = Runner(self.plan, self.store, phases if phases is not None else self.phases, emit=emit)
        return await runner.run(resume=resume, before=self._provision if provision else None)

    async def dry_run(self, emit: ev.Emit | None = None) -> RunResult:
        """Facts and checks on hosts that exist; nothing is changed or created."""
        runner = Runner(self.plan, self.store, self.phases, emit=emit)
        ready = [h for h in runner.inventory if h.ready]
        runner.inventory.hosts = ready
        return await runner.run(dry_run=True)

    def host_specs(self) -> list[HostSpec]:
        """Each planned host with its user data; the host key is made once and kept."""
        specs = []
        for name, role in self.plan.hosts():
            priv = self.store.secrets.get_or_create(f"host_key_{name}", lambda: hostkeys.generate()[0])
            pub = hostkeys.public_of(priv)
            rec = self.store.host(name, role)
            rec.host_key = pub
            specs.append(HostSpec(name, role, self.plan.size_of(role).slug, cloudinit.user_data(priv, pub)))
        self.store.save()
        return specs

    async def preflight(self, runner: Runner) -> bool:
        """Refuse an incompatible plan before anything is created (or costs money).

        The release server's /<version>/info names the MongoDB series and the Node
        and Deno versions the release runs on; the plan must match it.
        """
        from . import releases

        runner.emit(ev.StepStarted("provision", "preflight.release", "wizard",
                                   f"Rocket.Chat {self.plan.rocketchat_version}: engine versions"))
        t0 = time.monotonic()
        try:
            rel = await asyncio.to_thread(releases.resolve, self.plan)
        except releases.ReleaseError as e:
            runner.emit(ev.StepFinished("provision", "preflight.release", "wizard", "failed", str(e),
                                        time.monotonic() - t0))
            return False
        runner.emit(ev.StepFinished("provision", "preflight.release", "wizard", "ok",
                                    f"Node {rel.node}, MongoDB {', '.join(rel.mongo)}"
                                    + (f", Deno {rel.deno}" if rel.deno else ""), time.monotonic() - t0))
        return True

    async def _provision(self, runner: Runner, run) -> bool:
        loop = asyncio.get_running_loop()
        if self.check_release and not await self.preflight(runner):
            return False

        def emit_ts(e: ev.Event) -> None:
            loop.call_soon_threadsafe(runner.emit, e)

        def on_resource(kind: str, id: str, data: dict) -> None:
            # Called the moment the create call returns: written before anything else can fail.
            name = data.get("host", data.get("name", ""))
            self.store.record_resource(kind, id, data.get("name", name), data)
            if kind == "droplet" and name in self.store.state.hosts:
                self.store.update_host(name, droplet_id=str(id))
            emit_ts(ev.ResourceRecorded(kind, str(id), data.get("name", name)))

        specs = self.host_specs()
        for s in specs:
            runner.emit(ev.StepStarted("provision", "provision.host", s.name, f"create {s.role} host ({s.size})"))
        t0 = time.monotonic()
        try:
            machines: list[Machine] = await asyncio.to_thread(
                self.provider.ensure_hosts, specs, on_resource=on_resource,
                progress=lambda text: emit_ts(ev.Progress("", text)),
            )
        except ProviderError as e:
            for s in specs:
                runner.emit(ev.StepFinished("provision", "provision.host", s.name, "failed", str(e),
                                            time.monotonic() - t0))
            return False
        for m in machines:
            rec = self.store.host(m.name, m.role)
            new = rec.droplet_id != m.id or rec.public_ip != m.public_ip
            rec.droplet_id, rec.public_ip, rec.private_ip = m.id, m.public_ip, m.private_ip
            runner.emit(ev.StepFinished("provision", "provision.host", m.name, "changed" if new else "ok",
                                        f"{m.id} at {m.public_ip} (private {m.private_ip})",
                                        time.monotonic() - t0))
        self.store.save()
        runner.refresh_inventory()
        results = await asyncio.gather(*(self._first_contact(runner, h) for h in runner.inventory))
        return all(results)

    async def _first_contact(self, runner: Runner, host) -> bool:
        """Wait for SSH with the pinned key and for cloud-init to finish, once per host."""
        if host.ready:
            return True
        runner.emit(ev.StepStarted("provision", "provision.ssh", host.name, "first SSH contact (pinned host key)"))
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < SSH_READY_TIMEOUT:
            conn = Connection(runner.target(host), runner._log_line, runner.secret_values)
            try:
                res = await conn.run("cloud-init status --wait >/dev/null 2>&1; cloud-init status 2>/dev/null | tail -n1",
                                     check=False, stream=False)
                runner.pool._conns[host.name] = conn      # reuse this connection for the run
                self.store.update_host(host.name, ready=True)
                runner.emit(ev.StepFinished("provision", "provision.ssh", host.name, "changed",
                                            f"host key verified; {res.stdout.strip() or 'cloud-init done'}",
                                            time.monotonic() - t0))
                return True
            except SSHError as e:
                await conn.close()
                last = str(e)
                if "does not match" in last:
                    break               # never retry a host key mismatch
                runner.emit(ev.Progress(host.name, f"waiting for SSH: {last}"))
                await asyncio.sleep(2)
        runner.emit(ev.StepFinished("provision", "provision.ssh", host.name, "failed", last or "timed out",
                                    time.monotonic() - t0))
        return False

    # -- after a run
    def admin_credentials_once(self) -> tuple[str, str] | None:
        """The first admin's user name and generated password, the first time only."""
        pw = self.store.secrets.get(ADMIN_PASSWORD_SECRET)
        if pw is None or self.store.state.admin_shown:
            return None
        self.store.state.admin_shown = True
        self.store.save()
        return self.plan.admin_username, pw

    def dns_offer(self):
        """When the domain lives in the DigitalOcean account: the A record to create, else None."""
        from recipes import tls

        web = next((h for h in self.store.state.hosts.values() if h.role == "web" and h.public_ip), None)
        if web is None or self.plan.provider != "digitalocean":
            return None
        offer = tls.dns_offer(self.plan.domain, web.public_ip, self.provider.domains())
        return offer if offer.zone else None

    # -- status
    async def status(self) -> ClusterStatus:
        out = ClusterStatus(monthly_cost=self.review().total_monthly)
        runner = Runner(self.plan, self.store, [], emit=None)

        async def one(h) -> HostStatus:
            if not h.ready:
                return HostStatus(h.name, h.role, False, error="not created yet")
            try:
                res = await asyncio.wait_for(runner.connection(h).run(STATUS_SCRIPT, check=False, stream=False), 20)
                return parse_status(h.name, h.role, res.stdout)
            except (SSHError, asyncio.TimeoutError, OSError) as e:
                return HostStatus(h.name, h.role, False, error=str(e) or "timed out")

        try:
            out.hosts = list(await asyncio.gather(*(one(h) for h in runner.inventory)))
            for probe in _status_probes():
                try:
                    await probe(self, runner, out)
                except Exception as e:     # a probe must never break the board
                    runner.emit(ev.LogLine("", f"status probe failed: {e}"))
        finally:
            await runner.pool.close()
        return out

    # -- destroy
    def destroy(self, progress: Callable[[str], None] = print) -> list[Machine]:
        gone = self.provider.destroy(progress=progress)
        for rec in self.store.state.hosts.values():
            rec.droplet_id = rec.public_ip = rec.private_ip = None
            rec.ready = False
            rec.ssh_user = "root"
            # a rebuilt host gets a new host key: never reuse a key that may have leaked with a droplet
            self.store.secrets.delete(f"host_key_{rec.name}")
            rec.host_key = None
        self.store.save()
        return gone


def _status_probes() -> list:
    """Recipes add their own status (MongoDB members, app health, certificate)."""
    probes = []
    try:
        from recipes import STATUS_PROBES
        probes.extend(STATUS_PROBES)
    except ImportError:
        pass
    return probes
