"""The lab provider: same contract as DigitalOcean (found by tag, reported at once, no duplicates)."""

from __future__ import annotations

import pytest

from wizard.providers.base import HostSpec
from wizard.providers.lab import LabProvider

pytestmark = pytest.mark.lab


def test_ensure_list_destroy(lab):
    prov = LabProvider("demo", lab=lab, ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyDummyDummyDummyDummyDummyDummyDumm x")
    specs = [HostSpec("mongo1", "mongo", "s-1vcpu-2gb", "#cloud-config\n{}\n"),
             HostSpec("web1", "web", "s-1vcpu-2gb", "#cloud-config\n{}\n")]
    seen = []
    machines = prov.ensure_hosts(specs, on_resource=lambda k, i, d: seen.append((k, i, d)), progress=lambda m: None)
    try:
        assert [(m.name, m.role, m.status) for m in machines] == [("mongo1", "mongo", "active"), ("web1", "web", "active")]
        assert [d["name"] for _, _, d in seen] == ["mongo1", "web1"]
        assert {m.id for m in machines} == {i for _, i, _ in seen}
        assert all(m.public_ip.startswith(str(lab.net.public.network_address)[:-1]) for m in machines)
        # Idempotent: a second call reuses, reports nothing new.
        again = prov.ensure_hosts(specs, on_resource=lambda *a: seen.append(a), progress=lambda m: None)
        assert [m.id for m in again] == [m.id for m in machines] and len(seen) == 2
        # Another deployment's hosts are not ours.
        assert LabProvider("other", lab=lab).list_hosts() == []
        assert sorted(m.name for m in prov.list_hosts()) == ["mongo1", "web1"]
        meta = (lab.host("demo-mongo1").machine_dir / "upper/var/lib/cloud/seed/nocloud/meta-data").read_text()
        assert "ssh-ed25519" in meta
    finally:
        gone = prov.destroy(progress=lambda m: None)
    assert sorted(m.name for m in gone) == ["mongo1", "web1"]
    assert prov.list_hosts() == []
