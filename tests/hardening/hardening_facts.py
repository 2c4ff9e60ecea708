"""Recorded facts and a step context around them (no SSH), for the unit tests and cases.py.

A module of its own, not conftest.py: several test folders have a conftest, and a bare
`from conftest import ...` picks whichever was imported first in a full run.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from labcluster import PLANNED
from wizard.engine import Ctx, Inventory
from wizard.plan import Plan
from wizard.state import HostRecord, Secrets

DATA = Path(__file__).with_name("data")


def recorded_inventory() -> list[HostRecord]:
    return [
        HostRecord(name=n, role="web" if n.startswith("web") else "mongo",
                   public_ip=f"198.18.80.{10 + i}", private_ip=f"198.18.81.{10 + i}",
                   host_key="ssh-ed25519 AAAA", ssh_user="root")
        for i, n in enumerate(PLANNED)
    ]


class _FakeRunner:
    """Just what Ctx reads from a Runner; a check never touches the network."""

    def __init__(self, plan: Plan, hosts: list[HostRecord], tmp: Path):
        self.plan = plan
        self.inventory = Inventory(hosts)
        self.store = SimpleNamespace(secrets=Secrets(tmp / "secrets.toml"))

    def emit(self, e):   # pragma: no cover - checks do not log
        pass


def make_ctx(plan: Plan, host: str, facts: dict[str, str], tmp: Path, *,
             in_container: bool = False, hosts: list[HostRecord] | None = None,
             ssh_user: str | None = None) -> Ctx:
    hosts = hosts or recorded_inventory()
    runner = _FakeRunner(plan, hosts, tmp)
    rec = runner.inventory.get(host)
    if ssh_user:
        rec = rec.model_copy(update={"ssh_user": ssh_user})
    ctx = Ctx(runner, rec, "hardening")  # type: ignore[arg-type]
    ctx.facts = {k: v for k, v in facts.items()}
    ctx.facts_rc = {k: 0 for k in facts}
    ctx.in_container = in_container
    return ctx


def load_facts(name: str) -> dict[str, str]:
    """A recorded facts file from data/facts/ (see record_facts.py)."""
    return json.loads((DATA / "facts" / f"{name}.json").read_text())["facts"]


def recorded_hosts(name: str) -> list[HostRecord] | None:
    """The lab's planned hosts when the facts were recorded (their addresses are in the facts)."""
    inv = json.loads((DATA / "facts" / f"{name}.json").read_text()).get("inventory") or {}
    if not all(n in inv for n in PLANNED):
        return None
    return [HostRecord(name=n, role="web" if n.startswith("web") else "mongo", public_ip=inv[n]["public_ip"],
                       private_ip=inv[n]["private_ip"], host_key="ssh-ed25519 AAAA", ssh_user="root")
            for n in PLANNED]
