"""A scripted deployment with the real one's API: the UI without SSH or a cloud.

subiquity's dry-run idea: the whole journey can be driven against sample
machines. ``DemoDeployment`` records its runs in a real ``StateStore`` (so
interrupting and resuming behave as with the engine) and emits the engine's
events with scripted timings, log lines and, optionally, one failure.

Try the app with it:  python -m screens.demo [answers.toml]   (state under a temporary folder
unless ROCKET_WIZARD_STATE_DIR is set; RW_DEMO_DELAY sets the seconds per step)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from wizard import events as ev
from wizard.deploy import (AppStatus, ClusterStatus, Deployment, HostStatus, MemberStatus, Review)
from wizard.engine import NoChange, Phase, RunResult, Step
from wizard.plan import Plan, plan_from_dict
from wizard.state import StateStore


def _step(sid: str, title: str, roles=("mongo", "web"), once: bool = False) -> Step:
    cls = type(sid.replace(".", "_"), (Step,), {"id": sid, "title": title, "roles": roles, "once": once,
                                                "check": lambda self, ctx: NoChange("demo")})
    return cls()


DEMO_PHASES = [
    Phase("harden", "Harden every host", [
        _step("harden.hostname", "hostname and /etc/hosts"),
        _step("harden.user", "sudo user with the operator's key"),
        _step("harden.sshd", "key-only SSH, no root login"),
        _step("harden.ufw", "firewall: deny incoming, allow SSH"),
        _step("harden.fail2ban", "fail2ban for sshd"),
    ]),
    Phase("mongodb", "MongoDB replica set", [
        _step("mongodb.repo", "MongoDB apt repository", ("mongo",)),
        _step("mongodb.install", "install mongodb-org", ("mongo",)),
        _step("mongodb.keyfile", "replica set keyfile", ("mongo",)),
        _step("mongodb.conf", "mongod.conf bound to the private address", ("mongo",)),
        _step("mongodb.initiate", "initiate replica set rs0", ("mongo",), once=True),
        _step("mongodb.users", "admin and rocketchat users", ("mongo",), once=True),
    ]),
    Phase("rocketchat", "Rocket.Chat instances", [
        _step("rocketchat.node", "Node.js for the release", ("web",)),
        _step("rocketchat.deno", "Deno for apps", ("web",)),
        _step("rocketchat.bundle", "download and install the bundle", ("web",)),
        _step("rocketchat.units", "systemd template unit and env file", ("web",)),
        _step("rocketchat.start", "start the instances, wait for /readyz", ("web",)),
    ]),
    Phase("nginx", "nginx and TLS", [
        _step("nginx.install", "install nginx", ("web",)),
        _step("nginx.tls", "certificate from Let's Encrypt", ("web",)),
        _step("nginx.site", "reverse proxy site with sticky upstream", ("web",)),
    ]),
]


def demo_plan(name: str = "demo-chat", ssh_key: Path | None = None, **over) -> Plan:
    data = dict(name=name, provider="digitalocean", region="fra1", domain="chat.example.com",
                admin_email="ops@example.com", ssh_key=str(ssh_key or "~/.ssh/id_ed25519"))
    data.update(over)
    return plan_from_dict(data, check_files=ssh_key is not None)


class DemoDeployment:
    """Same interface as wizard.deploy.Deployment; nothing leaves the process."""

    def __init__(self, plan: Plan, store: StateStore | None = None, *, delay: float = 0.15,
                 fail_once: tuple[str, ...] = ("rocketchat.bundle@web1",), log_lines: int = 3,
                 elapsed: float | None = None, status_delay: float = 0.0):
        self.plan = plan
        self.store = store or StateStore(plan.name)
        self.delay = delay
        self.fail_once = set(fail_once)
        self.log_lines = log_lines
        self.fixed_elapsed = elapsed
        self.status_delay = status_delay
        self.phases = list(DEMO_PHASES)
        self.apply_calls = 0
        self._converged: set[str] = set()      # steps done once: a later run finds nothing to do

    def review(self, prices: dict[str, float] | None = None) -> Review:
        return Deployment(self.plan, self.store).review(prices)

    async def apply(self, emit: ev.Emit | None = None, *, resume: bool = True,
                    phases: list[Phase] | None = None, provision: bool = True) -> RunResult:
        self.apply_calls += 1
        emit = emit or (lambda e: None)
        phases = self.phases if phases is None else phases
        t0 = time.monotonic()
        run, resumed = self.store.start_run(resume)
        hosts = self.plan.hosts()
        emit(ev.RunStarted(run.id, resumed, tuple(p.id for p in phases), tuple(h for h, _ in hosts)))
        counts = {"changed": 0, "failed": 0}
        failures: list[tuple[str, str, str]] = []
        interrupted = False
        ok = True

        async def one(phase: str, step_id: str, title: str, host: str) -> bool:
            key = f"{step_id}@{host}"
            if run.done(key):
                rec = run.steps[key]
                emit(ev.StepFinished(phase, step_id, host, rec.status,
                                     f"done before the interruption: {rec.reason}", 0.0))
                return True
            s0 = time.monotonic()
            emit(ev.StepStarted(phase, step_id, host, title))
            self.store.step(run, key, "running")
            for i in range(self.log_lines):
                emit(ev.LogLine(host, f"{step_id}: {title} ({i + 1}/{self.log_lines})", "out"))
            await asyncio.sleep(self.delay)
            took = self.fixed_elapsed if self.fixed_elapsed is not None else time.monotonic() - s0
            if key in self.fail_once:
                self.fail_once.discard(key)
                cmd = "curl -fsSL -o /tmp/rocket.chat.tgz https://releases.rocket.chat/8.2.0/download"
                out = "curl: (28) Operation timed out after 30001 milliseconds with 0 bytes received"
                reason = "command failed with exit status 28"
                emit(ev.LogLine(host, out, "err"))
                self.store.step(run, key, "failed", reason)
                counts["failed"] += 1
                failures.append((host, step_id, reason))
                emit(ev.StepFinished(phase, step_id, host, "failed", reason, took, cmd, out))
                return False
            status = "ok" if key in self._converged else "changed"
            self._converged.add(key)
            reason = title if status == "changed" else "already as planned"
            self.store.step(run, key, status, reason)
            counts["changed"] += status == "changed"
            emit(ev.StepFinished(phase, step_id, host, status, reason, took))   # type: ignore[arg-type]
            return True

        try:
            for name, role in hosts:
                rec = self.store.host(name, role)
                if not rec.public_ip:
                    n = len(self.store.state.hosts)
                    rec.public_ip, rec.private_ip = f"203.0.113.{10 + n}", f"10.110.0.{10 + n}"
                    rec.droplet_id = str(4000 + n)
            self.store.save()
            res = await asyncio.gather(*(one("provision", "provision.host", f"create {r} host", h)
                                         for h, r in hosts))
            emit(ev.Progress("", "droplets active; waiting for SSH"))
            if all(res):
                res = await asyncio.gather(*(one("provision", "provision.ssh", "first SSH contact", h)
                                             for h, r in hosts))
            ok = all(res)
            for phase in phases if ok else []:
                phase_hosts = [h for h, r in hosts if any(r in s.roles for s in phase.steps)]
                emit(ev.PhaseStarted(phase.id, phase.title, tuple(phase_hosts), tuple(s.id for s in phase.steps)))
                for seg in phase.segments():
                    seg_hosts = [h for h, r in hosts if r in seg[0].roles]
                    if seg[0].once:
                        seg_hosts = seg_hosts[:1]

                    async def host_run(h: str, seg=seg, phase=phase) -> bool:
                        for s in seg:
                            if not await one(phase.id, s.id, s.title, h):
                                return False
                        return True
                    res = await asyncio.gather(*(host_run(h) for h in seg_hosts))
                    if not all(res):
                        ok = False
                        break
                emit(ev.PhaseFinished(phase.id, not ok))
                if not ok:
                    break
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            self.store.finish_run(run, "interrupted" if interrupted else ("done" if ok else "failed"))
            elapsed = time.monotonic() - t0
            if self.fixed_elapsed is not None:      # scripted time: stable pictures
                elapsed = self.fixed_elapsed * (len(run.steps) or 1)
            emit(ev.RunFinished(run.id, ok and not interrupted, counts["changed"], counts["failed"], elapsed,
                                {h: 4 for h, _ in hosts}, interrupted))
        return RunResult(ok, counts["changed"], counts["failed"], time.monotonic() - t0,
                         {h: 4 for h, _ in hosts}, failures=failures)

    async def status(self) -> ClusterStatus:
        await asyncio.sleep(self.status_delay)
        hosts = []
        for i, (name, role) in enumerate(self.plan.hosts()):
            if name == "mongo3":
                hosts.append(HostStatus(name, role, False, error="connection timed out"))
            else:
                hosts.append(HostStatus(name, role, True, 0.12 + i / 10, 41.5 + 3 * i, 23.0 + i))
        members = [MemberStatus(f"mongo{i}.{self.plan.domain}:27017", st, h, lag)
                   for i, st, h, lag in [(1, "PRIMARY", 1, 0.0), (2, "SECONDARY", 1, 0.4),
                                         (3, "(not reachable)", 0, None)][: self.plan.mongo_members]]
        apps = [AppStatus(h, p, True, self.plan.rocketchat_version)
                for h, r in self.plan.hosts() if r == "web" for p in self.plan.ports()]
        return ClusterStatus(hosts, members, apps, cert_days_left=83,
                             monthly_cost=self.review().total_monthly, checked_at=0.0)


def main() -> int:
    import os
    import tempfile

    from .app import RocketWizardApp

    if "ROCKET_WIZARD_STATE_DIR" not in os.environ:
        os.environ["ROCKET_WIZARD_STATE_DIR"] = tempfile.mkdtemp(prefix="rw-demo-")
    import sys
    delay = float(os.environ.get("RW_DEMO_DELAY", "0.4"))
    answers = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    app = RocketWizardApp(answers=answers, make_deployment=lambda plan: DemoDeployment(plan, delay=delay),
                          check_files=False)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------- scenes
# One place that puts the real app in each state worth seeing: the snapshot
# tests and scripts/screenshots.py both use it, so the README's pictures are
# the tested screens.

SCENE_STATE_DIR = Path("/tmp/rocket-wizard-scenes/state")


class FixedClock:
    """A clock that only moves when told: elapsed times and ETAs are stable in snapshots."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def prepare_state(root: Path = SCENE_STATE_DIR) -> Path:
    import os
    import shutil
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    os.environ["ROCKET_WIZARD_STATE_DIR"] = str(root)
    return root


def make_interrupted(plan: Plan, done_until: str = "mongodb.keyfile") -> StateStore:
    """A deployment whose run stopped part-way (as after Ctrl-C), with its plan saved."""
    from wizard.plan import save_plan
    store = StateStore(plan.name)
    store.dir.mkdir(parents=True, exist_ok=True)
    run, _ = store.start_run(False)
    hosts = plan.hosts()
    for name, role in hosts:
        rec = store.host(name, role)
        rec.public_ip = f"203.0.113.{10 + len(store.state.hosts)}"
    keys = [f"provision.host@{h}" for h, _ in hosts] + [f"provision.ssh@{h}" for h, _ in hosts]
    for ph in DEMO_PHASES:
        for s in ph.steps:
            targets = [h for h, r in hosts if r in s.roles]
            keys += [f"{s.id}@{h}" for h in (targets[:1] if s.once else targets)]
    for key in keys:
        if key.startswith(done_until):
            store.step(run, key, "running")
            break
        store.step(run, key, "changed", "demo")
    store.finish_run(run, "interrupted")
    run.started = run.finished = 1_796_000_000.0     # a fixed date for stable pictures
    store.save()
    save_plan(plan, store.dir / "plan.toml")
    return store


def demo_app(**kw):
    from .app import RocketWizardApp
    kw.setdefault("make_deployment", lambda p: DemoDeployment(p, delay=0, elapsed=2.0))
    kw.setdefault("clock", FixedClock())
    kw.setdefault("check_files", False)
    kw.setdefault("offer_resume", False)
    return RocketWizardApp(**kw)


async def settle(pilot) -> None:
    """Let workers finish and stop cursors blinking, so a screenshot is stable."""
    from textual.widgets import Input

    from .run import RunScreen
    await pilot.pause()
    for _ in range(400):
        if not (isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.running):
            break
        await pilot.pause(0.02)
    await pilot.pause(0.05)
    for w in pilot.app.screen.query(Input):
        w.cursor_blink = False
    if isinstance(pilot.app.screen, RunScreen):
        # the failure panel changes the log's height: settle its scroll before the picture
        from .widgets.log_pane import LogPane
        pane = pilot.app.screen.query_one(LogPane)
        pane.flush()
        await pilot.pause()
        pane.scroll_end(animate=False, immediate=True)
    await pilot.pause()


async def scene_welcome(pilot):
    make_interrupted(demo_plan("acme-chat"))
    pilot.app.screen.refresh_choices()
    await settle(pilot)


async def scene_cost(pilot):
    await pilot.press("c")
    await settle(pilot)


async def scene_plan(pilot):
    await pilot.press("n")
    await pilot.press("ctrl+n")
    await pilot.pause()
    s = pilot.app.screen
    s.query_one("#f-name").value = "acme-chat"
    s.query_one("#f-domain").value = "chat"
    s.query_one("#f-admin-email").value = "ops@example.com"
    s.query_one("#f-app-hosts").value = "two"
    await settle(pilot)


async def scene_review(pilot):
    from .review import ReviewScreen
    await pilot.app.push_screen(ReviewScreen(demo_plan("acme-chat")))
    await settle(pilot)


async def _run(pilot, fail: bool):
    from .run import RunScreen
    plan = demo_plan("acme-chat")
    d = DemoDeployment(plan, delay=0, elapsed=2.0, log_lines=2, fail_once=("rocketchat.bundle@web1",) if fail else ())
    await pilot.app.push_screen(RunScreen(d))
    await settle(pilot)


async def scene_run_failed(pilot):
    await _run(pilot, True)


async def scene_run_done(pilot):
    await _run(pilot, False)


async def scene_resume(pilot):
    from .backend import found_deployments
    make_interrupted(demo_plan("acme-chat"))
    pilot.app.offer_resume_for(found_deployments()[0])
    await settle(pilot)


async def scene_status(pilot):
    from .status import StatusScreen
    await pilot.app.push_screen(StatusScreen(DemoDeployment(demo_plan("acme-chat"))))
    await settle(pilot)


async def scene_done(pilot):
    from .done import DoneScreen
    plan = demo_plan("acme-chat")
    d = DemoDeployment(plan)
    make_interrupted(plan)
    d.store = StateStore(plan.name)
    await pilot.app.push_screen(DoneScreen(d))
    await settle(pilot)


# name -> (scene, terminal size)
SCENES = {
    "welcome": (scene_welcome, (80, 24)),
    "cost": (scene_cost, (80, 24)),
    "plan": (scene_plan, (80, 24)),
    "review": (scene_review, (80, 24)),
    "run-failed": (scene_run_failed, (80, 24)),
    "run-done": (scene_run_done, (80, 24)),
    "resume": (scene_resume, (80, 24)),
    "status": (scene_status, (80, 24)),
    "done": (scene_done, (80, 24)),
    "run-failed-wide": (scene_run_failed, (120, 36)),
    "cost-wide": (scene_cost, (120, 36)),
}
