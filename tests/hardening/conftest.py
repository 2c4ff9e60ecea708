"""Fixtures for the hardening tests.

Unit tests build a real ``wizard.engine.Ctx`` around recorded facts (no SSH); the
lab tests boot four planned hosts plus one outsider in the lab (prefix rh) and
run the hardening phase on them twice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from wizard.engine import Ctx, Inventory  # noqa: E402
from wizard.plan import Plan  # noqa: E402
from wizard.state import HostRecord, Secrets  # noqa: E402

from labcluster import PLANNED, boot_cluster, lab_available  # noqa: E402,F401

DATA = Path(__file__).with_name("data")


# ---------------------------------------------------------------- unit: recorded facts


# Fixed key for recorded cases, so their expected ops can spell the key out.
from cases import RECORDED_KEY as RECORDED_PUBKEY  # noqa: E402


@pytest.fixture(scope="session")
def recorded_key(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("recorded-key")
    p = d / "id_ed25519"
    p.write_text("not used: recorded cases never connect\n")
    p.with_name("id_ed25519.pub").write_text(RECORDED_PUBKEY + "\n")
    return p


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


@pytest.fixture
def recorded_plan(recorded_key):
    def make(**over) -> Plan:
        base = dict(name="rh-test", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
                    ssh_key=str(recorded_key), image="debian-12-x64")
        base.update(over)
        return Plan.model_validate(base)
    return make


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


# ---------------------------------------------------------------- lab


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    why = lab_available()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("rh-lab")
    c = boot_cluster(tmp)
    yield c
    if not os.environ.get("RW_KEEP_LAB"):
        c.lab.down()


@pytest.fixture(scope="session")
def hardened(cluster):
    """The cluster after the phase ran twice (Molecule's converge + idempotence)."""
    res1, ev1 = cluster.run_phase()
    res2, ev2 = cluster.run_phase()
    return cluster, (res1, ev1), (res2, ev2)


