"""Fixtures for the hardening tests.

Unit tests build a real ``wizard.engine.Ctx`` around recorded facts (no SSH); the
lab tests boot four planned hosts plus one outsider in the lab (prefix rh) and
run the hardening phase on them twice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from wizard.plan import Plan  # noqa: E402

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


@pytest.fixture
def recorded_plan(recorded_key):
    def make(**over) -> Plan:
        base = dict(name="rh-test", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
                    ssh_key=str(recorded_key), image="debian-12-x64")
        base.update(over)
        return Plan.model_validate(base)
    return make


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


