"""The step engine: facts -> check -> apply, per host in parallel, phase by phase.

pyinfra's split, with one difference for speed: a phase's facts for one host are
gathered in ONE round trip (a batched script), so a rerun with nothing to do
costs one round trip per host per phase. A step whose check finds nothing to do
does nothing and says why. The engine records every step in the state as it
goes, so an interrupted run resumes at the first unfinished step; a finished run
is followed by a fresh one that checks everything again (converge).

It knows nothing of Textual: progress leaves as events (wizard.events).
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from . import events as ev
from .ops import Op, redact
from .plan import Plan
from .ssh import CommandFailed, Connection, Pool, SSHError, Target
from .state import HostRecord, RunRecord, Secrets, StateStore

# ---------------------------------------------------------------- outcomes


@dataclass
class NoChange:
    reason: str


@dataclass
class Skip:
    reason: str


@dataclass
class Change:
    summary: str
    ops: list[Op] = field(default_factory=list)
    data: Any = None


Outcome = NoChange | Skip | Change


class StepError(Exception):
    """A step failed in a way the operator can read in one line."""


# ---------------------------------------------------------------- inventory


class Inventory:
    def __init__(self, hosts: Iterable[HostRecord]):
        self.hosts = list(hosts)

    def by_role(self, role: str) -> list[HostRecord]:
        return [h for h in self.hosts if h.role == role]

    def get(self, name: str) -> HostRecord:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def __iter__(self):
        return iter(self.hosts)


# ---------------------------------------------------------------- context


class Ctx:
    """What a step sees of one host."""

    def __init__(self, runner: "Runner", host: HostRecord, phase: str):
        self._runner = runner
        self.plan: Plan = runner.plan
        self.host = host
        self.inventory: Inventory = runner.inventory
        self.secrets: Secrets = runner.store.secrets
        self.state = runner.store
        self.phase = phase
        self.facts: dict[str, str] = {}
        self.facts_rc: dict[str, int] = {}
        self.in_container: bool = False
        self.step_id = ""

    @property
    def conn(self) -> Connection:
        return self._runner.connection(self.host)

    def log(self, text: str) -> None:
        self._runner.emit(ev.LogLine(self.host.name, text, "info"))

    def progress(self, text: str) -> None:
        self._runner.emit(ev.Progress(self.host.name, text))

    async def run_ops(self, ops: list[Op]) -> None:
        if ops:
            await self.conn.run_ops(ops)

    async def run(self, script: str, **kw):
        return await self.conn.run(script, **kw)

    def record(self, **fields) -> None:
        """Change this host's record (e.g. ``ssh_user`` once the sudo user works)."""
        self._runner.store.update_host(self.host.name, **fields)
        self.host = self._runner.store.state.hosts[self.host.name]

    def conn_to(self, host: HostRecord) -> Connection:
        """The run's connection to another host (e.g. the replica set's current primary)."""
        return self._runner.connection(host)

    def connection_as(self, user: str) -> Connection:
        """A separate connection as another user, e.g. to prove a login works."""
        return Connection(self._runner.target(self.host, user=user), self._runner._log_line,
                          self._runner.secret_values)

    def fact(self, name: str, default: str = "") -> str:
        return self.facts.get(name, default)


# ---------------------------------------------------------------- steps


class Step:
    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ("mongo", "web")
    facts: ClassVar[dict[str, str]] = {}
    once: ClassVar[bool] = False          # cluster step: one host of its roles, after a barrier

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return dict(self.facts)

    def applies(self, ctx: Ctx) -> bool:
        return ctx.host.role in self.roles

    def describe(self, plan: Plan) -> str:
        return self.title

    def check(self, ctx: Ctx) -> Outcome:   # pragma: no cover - every step defines it
        raise NotImplementedError

    async def apply(self, ctx: Ctx, change: Change) -> None:
        await ctx.run_ops(change.ops)


@dataclass
class Phase:
    id: str
    title: str
    steps: list[Step]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for s in self.steps:
            if not s.id or s.id in seen:
                raise ValueError(f"phase {self.id}: step id {s.id!r} missing or repeated")
            seen.add(s.id)

    def segments(self) -> list[list[Step]]:
        """Runs of per-host steps, with each ``once`` step alone in its own segment."""
        out: list[list[Step]] = []
        for s in self.steps:
            if s.once or not out or out[-1][0].once:
                out.append([s])
            else:
                out[-1].append(s)
        return out


# ---------------------------------------------------------------- facts


MARK = "@@RW@@"
CONTAINER_FACT = "_container"
BASE_FACTS = {CONTAINER_FACT: "systemd-detect-virt -c 2>/dev/null || true"}


def facts_script(commands: dict[str, str]) -> str:
    """One script printing every fact between markers, with its exit status."""
    parts = ["exec 2>&1"]
    for name, cmd in commands.items():
        parts.append(f"printf '\\n%s\\n' {shlex.quote(MARK + ' ' + name)}")
        parts.append(f"( {cmd}\n)")
        parts.append(f"printf '\\n%s %s\\n' {shlex.quote(MARK + ' rc ' + name)} \"$?\"")
    return "\n".join(parts) + "\n"


def parse_facts(output: str) -> tuple[dict[str, str], dict[str, int]]:
    facts: dict[str, str] = {}
    rcs: dict[str, int] = {}
    name = None
    buf: list[str] = []
    for line in output.split("\n"):
        if line.startswith(MARK + " rc "):
            _, _, rest = line.partition(MARK + " rc ")
            n, _, rc = rest.rpartition(" ")
            if name is not None:
                facts[name] = "\n".join(buf).strip("\n")
                rcs[n] = int(rc) if rc.lstrip("-").isdigit() else 1
            name, buf = None, []
        elif line.startswith(MARK + " "):
            name, buf = line[len(MARK) + 1:], []
        elif name is not None:
            buf.append(line)
    return facts, rcs


# ---------------------------------------------------------------- runner


@dataclass
class RunResult:
    ok: bool
    changed: int
    failed: int
    elapsed: float
    round_trips: dict[str, int]
    changes: list[tuple[str, str, str]] = field(default_factory=list)   # (host, step, summary)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (host, step, reason)


class Runner:
    def __init__(self, plan: Plan, store: StateStore, phases: list[Phase], *,
                 emit: ev.Emit | None = None, hosts: Iterable[str] | None = None):
        self.plan = plan
        self.store = store
        self.phases = phases
        self._emit = emit or (lambda e: None)
        self.only_hosts = set(hosts) if hosts else None
        self.pool = Pool(self._log_line, self.secret_values)
        self.inventory = Inventory([])
        self.refresh_inventory()
        self._changed = 0
        self._failed = 0
        self._changes: list[tuple[str, str, str]] = []
        self._failures: list[tuple[str, str, str]] = []

    # -- plumbing
    def emit(self, e: ev.Event) -> None:
        try:
            self._emit(e)
        except Exception:       # a broken listener must not break a deployment
            pass

    def secret_values(self) -> list[str]:
        return self.store.secrets.values()

    def _log_line(self, host: str, stream: str, text: str) -> None:
        self.emit(ev.LogLine(host, text, stream))  # type: ignore[arg-type]

    def refresh_inventory(self) -> None:
        order = [n for n, _ in self.plan.hosts()]
        recs = [self.store.state.hosts[n] for n in order if n in self.store.state.hosts]
        self.inventory = Inventory(recs)

    def target(self, host: HostRecord, user: str | None = None) -> Target:
        if not host.public_ip or not host.host_key:
            raise SSHError(f"{host.name}: no address or pinned host key in the state yet")
        return Target(host.name, host.public_ip, user or host.ssh_user, host.host_key,
                      self.plan.ssh_key, host.ssh_port)

    def connection(self, host: HostRecord) -> Connection:
        return self.pool.get(self.target(self.store.state.hosts[host.name]))

    # -- facts
    async def gather(self, ctx: Ctx, steps: list[Step]) -> None:
        cmds: dict[str, str] = dict(BASE_FACTS)
        for s in steps:
            for k, v in s.fact_commands(ctx).items():
                if k in cmds and cmds[k] != v:
                    raise StepError(f"fact {k!r} is defined twice with different commands ({s.id})")
                cmds[k] = v
        script = facts_script(cmds)
        try:
            res = await ctx.conn.run(script, check=False, stream=False)
        except SSHError as e:
            # Reading facts changes nothing, so a connection that dropped (sshd restarted by
            # an upgrade, a keepalive lost under load) is worth one fresh try.
            if "closed" not in str(e).lower() and "lost" not in str(e).lower():
                raise
            await self.pool.drop(ctx.host.name)
            ctx.log(f"connection dropped ({e}); reconnecting once to read facts")
            res = await ctx.conn.run(script, check=False, stream=False)
        ctx.facts, ctx.facts_rc = parse_facts(res.stdout)
        ctx.in_container = bool(ctx.facts.get(CONTAINER_FACT, "").strip() not in ("", "none"))

    # -- one host through a run of steps
    async def _host_steps(self, phase: Phase, steps: list[Step], host: HostRecord,
                          run: RunRecord | None, dry_run: bool) -> bool:
        ctx = Ctx(self, host, phase.id)
        todo: list[Step] = []
        for s in steps:
            if not s.applies(ctx):
                continue
            key = f"{s.id}@{host.name}"
            if run is not None and run.done(key):
                rec = run.steps[key]
                self.emit(ev.StepFinished(phase.id, s.id, host.name, rec.status,  # type: ignore[arg-type]
                                          f"done before the interruption: {rec.reason}", 0.0))
                continue
            todo.append(s)
        stale = True
        for i, s in enumerate(todo):
            key = f"{s.id}@{host.name}"
            t0 = time.monotonic()
            ctx.step_id = s.id
            self.emit(ev.StepStarted(phase.id, s.id, host.name, s.describe(self.plan)))
            if run is not None:
                self.store.step(run, key, "running")
            try:
                if stale:
                    await self.gather(ctx, todo[i:])
                    stale = False
                outcome = s.check(ctx)
                if isinstance(outcome, Change) and not dry_run:
                    ctx.log(f"{s.id}: {outcome.summary}")
                    await s.apply(ctx, outcome)
                    stale = True
                    status, reason = "changed", outcome.summary
                    self._changed += 1
                    self._changes.append((host.name, s.id, outcome.summary))
                elif isinstance(outcome, Change):
                    status, reason = "changed", "would " + outcome.summary
                    self._changes.append((host.name, s.id, outcome.summary))
                elif isinstance(outcome, Skip):
                    status, reason = "skipped", outcome.reason
                else:
                    status, reason = "ok", outcome.reason
            except asyncio.CancelledError:
                raise
            except Exception as e:   # one failed step stops this host's phase, not the others
                command, output = "", ""
                if isinstance(e, CommandFailed):
                    command, output = e.command, e.output
                reason = redact(str(e) or type(e).__name__, self.secret_values())
                self._failed += 1
                self._failures.append((host.name, s.id, reason))
                if run is not None:
                    self.store.step(run, key, "failed", reason)
                self.emit(ev.StepFinished(phase.id, s.id, host.name, "failed", reason,
                                          time.monotonic() - t0, command, output[-4000:]))
                return False
            if run is not None:
                self.store.step(run, key, status, reason)
            self.emit(ev.StepFinished(phase.id, s.id, host.name, status, reason,  # type: ignore[arg-type]
                                      time.monotonic() - t0))
        return True

    def _hosts_for(self, phase_steps: list[Step]) -> list[HostRecord]:
        roles = {r for s in phase_steps for r in s.roles}
        hs = [h for h in self.inventory if h.role in roles]
        if self.only_hosts is not None:
            hs = [h for h in hs if h.name in self.only_hosts]
        return hs

    async def run_phase(self, phase: Phase, run: RunRecord | None, dry_run: bool) -> bool:
        hosts = self._hosts_for(phase.steps)
        self.emit(ev.PhaseStarted(phase.id, phase.title, tuple(h.name for h in hosts),
                                  tuple(s.id for s in phase.steps)))
        ok = True
        for seg in phase.segments():
            seg_hosts = self._hosts_for(seg)
            if seg[0].once:
                seg_hosts = seg_hosts[:1]
            results = await asyncio.gather(*(self._host_steps(phase, seg, h, run, dry_run) for h in seg_hosts))
            if not all(results):
                ok = False
                break     # a cluster step must not run on a half-prepared cluster
        self.emit(ev.PhaseFinished(phase.id, not ok))
        return ok

    async def run(self, *, dry_run: bool = False, resume: bool = True,
                  before: Callable[["Runner", RunRecord | None], Any] | None = None) -> RunResult:
        """Run every phase. ``before`` (e.g. provisioning) runs first, inside the run record."""
        t0 = time.monotonic()
        run: RunRecord | None = None
        resumed = False
        if not dry_run:
            run, resumed = self.store.start_run(resume)
        self.emit(ev.RunStarted(run.id if run else "plan", resumed, tuple(p.id for p in self.phases),
                                tuple(n for n, _ in self.plan.hosts()), dry_run))
        ok = True
        interrupted = False
        try:
            if before is not None:
                res = before(self, run)
                if asyncio.iscoroutine(res):
                    res = await res
                ok = res is not False
                self.refresh_inventory()
            for phase in self.phases if ok else []:
                if not await self.run_phase(phase, run, dry_run):
                    ok = False
                    break
        except (asyncio.CancelledError, KeyboardInterrupt):
            interrupted = True
            raise
        finally:
            if run is not None:
                self.store.finish_run(run, "interrupted" if interrupted else ("done" if ok else "failed"))
            rt = self.pool.round_trips()
            await self.pool.close()
            self.emit(ev.RunFinished(run.id if run else "plan", ok and not interrupted, self._changed,
                                     self._failed, time.monotonic() - t0, rt, interrupted))
        return RunResult(ok, self._changed, self._failed, time.monotonic() - t0, rt,
                         self._changes, self._failures)
