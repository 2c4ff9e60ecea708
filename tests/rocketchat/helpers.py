"""Test helpers: a plan, an inventory and a step context without SSH."""

from __future__ import annotations

from tests.keys import operator_key

from wizard.engine import Inventory
from wizard.plan import Plan
from wizard.releases import Release
from wizard.state import HostRecord, Secrets

RELEASE = Release(version="8.2.0", node="22.22.3", mongo=("8.0",), deno="2.6.10",
                  info_url="http://m/rocketchat/8.2.0/info", tarball_url="http://m/rocketchat/8.2.0/download")


def ssh_key(tmp_path):
    return operator_key(tmp_path)


def make_plan(tmp_path, **kw) -> Plan:
    data = dict(name="rt", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
                ssh_key=ssh_key(tmp_path), instances_per_host=2)
    data.update(kw)
    return Plan(**data)


def inventory(web=1) -> Inventory:
    hosts = [HostRecord(name=f"mongo{i}", role="mongo", public_ip=f"198.18.64.{10 + i}",
                        private_ip=f"198.18.65.{10 + i}") for i in (1, 2, 3)]
    hosts += [HostRecord(name=f"web{i}", role="web", public_ip=f"198.18.64.{20 + i}",
                         private_ip=f"198.18.65.{20 + i}") for i in range(1, web + 1)]
    return Inventory(hosts)


class FakeCtx:
    def __init__(self, plan, inv, host="web1", facts=None, secrets=None):
        self.plan = plan
        self.inventory = inv
        self.host = inv.get(host)
        self.facts = facts or {}
        self.facts_rc = {}
        self.secrets = secrets
        self.ran = []

    def fact(self, name, default=""):
        return self.facts.get(name, default)

    async def run(self, script, **kw):
        self.ran.append(script)


def secrets(tmp_path) -> Secrets:
    return Secrets(tmp_path / "secrets.toml")
