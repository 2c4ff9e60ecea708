"""What the screens need from the engine, behind one small seam.

Screens talk to a deployment only through ``DeploymentLike`` (the API of
``wizard.deploy.Deployment``): the app receives a factory, so tests and
screenshots drive every screen with ``screens.demo.DemoDeployment`` and no SSH.
Blocking calls (live prices) are run by the screens in thread workers.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from wizard import events as ev
from wizard.plan import Plan, PlanError, load_plan
from wizard.state import DONE, RunRecord, StateError, StateStore, list_deployments


class DeploymentLike(Protocol):
    plan: Plan
    store: StateStore

    def review(self, prices: dict[str, float] | None = None) -> Any: ...
    async def apply(self, emit: ev.Emit | None = None, *, resume: bool = True, **kw) -> Any: ...
    async def status(self) -> Any: ...


Factory = Callable[[Plan], DeploymentLike]


def real_deployment(plan: Plan) -> DeploymentLike:
    from wizard.deploy import Deployment
    return Deployment(plan)


def supports_phases(d: DeploymentLike) -> bool:
    """Whether ``apply`` takes ``phases=`` (needed for 'skip this step')."""
    try:
        return "phases" in inspect.signature(d.apply).parameters
    except (TypeError, ValueError):
        return False


def phases_of(d: DeploymentLike) -> list:
    try:
        return list(getattr(d, "phases", []) or [])
    except (ImportError, AttributeError):     # recipes not there yet: the board grows from events
        return []


def expected_cells(plan: Plan, phases: list) -> tuple[list[tuple[str, str, str]], int]:
    """(host, phase id, phase title) for every cell that will run, and the number of steps.

    Provisioning is two steps per host (create, first SSH contact); a ``once``
    step runs on the first host of its roles.
    """
    hosts = plan.hosts()
    cells: list[tuple[str, str, str]] = [(h, "provision", "Provision") for h, _ in hosts]
    total = 2 * len(hosts)
    for ph in phases:
        seen: set[str] = set()
        for st in ph.steps:
            roles = getattr(st, "roles", ("mongo", "web"))
            targets = [h for h, r in hosts if r in roles]
            if getattr(st, "once", False):
                targets = targets[:1]
            total += len(targets)
            seen.update(targets)
        cells += [(h, ph.id, ph.title) for h, _ in hosts if h in seen]
    return cells, total


def skip_step(phases: list, step_id: str) -> list:
    """The phases without one step, for a rerun that skips it this time only."""
    from wizard.engine import Phase
    return [Phase(p.id, p.title, [s for s in p.steps if s.id != step_id]) for p in phases]


# ---------------------------------------------------------------- found deployments


@dataclass
class Found:
    name: str
    store: StateStore
    plan_path: Path
    unfinished: RunRecord | None
    last_status: str          # "never run" | "done" | "failed" | "interrupted" | "running"
    done_steps: int
    hosts: int

    @property
    def has_plan(self) -> bool:
        return self.plan_path.is_file()

    def describe(self) -> str:
        if self.unfinished is not None:
            return f"{self.last_status}: {self.done_steps} steps done, can resume"
        return self.last_status


def found_deployments(root: Path | None = None) -> list[Found]:
    out = []
    for store in list_deployments(root):
        run = store.state.last_run
        unfinished = store.state.unfinished_run()
        done = sum(1 for s in (run.steps.values() if run else []) if s.status in DONE)
        out.append(Found(store.name, store, store.dir / "plan.toml", unfinished,
                         run.status if run else "never run", done, len(store.state.hosts)))
    return out


def saved_plan(found: Found, check_files: bool = True) -> Plan:
    """The plan saved beside the state when the deployment was applied."""
    if not found.has_plan:
        raise PlanError(f"deployment {found.name!r}: no saved plan in {found.plan_path.parent}")
    return load_plan(found.plan_path, check_files)


def open_store(name: str) -> StateStore | None:
    try:
        return StateStore(name)
    except StateError:
        return None


def done_by_phase(run: RunRecord) -> dict[str, tuple[int, int]]:
    """phase prefix of the step ids -> (done, recorded) for the resume offer."""
    out: dict[str, list[int]] = {}
    for key, rec in run.steps.items():
        step = key.split("@", 1)[0]
        phase = step.split(".", 1)[0]
        d = out.setdefault(phase, [0, 0])
        d[1] += 1
        if rec.status in DONE:
            d[0] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


# ---------------------------------------------------------------- prices


def live_prices(plan: Plan) -> tuple[dict[str, float] | None, str]:
    """Live droplet prices when a token is set; blocking (call it in a thread)."""
    if plan.provider != "digitalocean":
        return None, "lab hosts cost nothing"
    if not os.environ.get("DIGITALOCEAN_ACCESS_TOKEN"):
        return None, "no token set: built-in price table"
    try:
        from wizard.providers.digitalocean import DigitalOceanClient, RetryPolicy
        from wizard.token import find_token
        # an estimate must not wait minutes for an API that is down: the table will do
        client = DigitalOceanClient(find_token(), policy=RetryPolicy(budget=8.0, connect_timeout=5.0,
                                                                     read_timeout=10.0))
        return client.prices(), "live prices from DigitalOcean"
    except Exception as e:          # never let a price lookup break the estimate
        from wizard.token import redact
        return None, "live prices unavailable: " + redact(str(e).splitlines()[0] if str(e) else type(e).__name__,
                                                          os.environ.get("DIGITALOCEAN_ACCESS_TOKEN"))
