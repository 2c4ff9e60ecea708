"""Fixtures for the DigitalOcean provider tests.

`do_token`: a distinctive fake token (the leak test searches for it).
`do_double`: the API double (tests/doubles/digitalocean.py), started, with
    DIGITALOCEAN_END_POINT pointing at it (the provider finds it that way, as a user
    would point it elsewhere); at teardown every request the wizard sent and every
    response the double served is validated against DigitalOcean's OpenAPI document.
`do_double_options`: override to pass options to the double (e.g. max_per_page).
`operator_key`: a fresh ed25519 key pair (private key object, OpenSSH public line).
`make_provider`: factory for DigitalOceanProvider against the double, fast retries.
`lab_double`: the double in lab mode (root conftest's `lab`): droplets boot as lab hosts.
`make_specs`: [(name, role)] -> HostSpecs.
`production_specs`: the 4 HostSpecs of a production plan (3 MongoDB + 1 web).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import asyncssh
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # `tests.doubles` is imported as a package
    sys.path.insert(0, str(ROOT))

from tests.doubles.digitalocean import DigitalOceanDouble  # noqa: E402
from wizard.providers.base import HostSpec  # noqa: E402
from wizard.providers.digitalocean import DigitalOceanProvider, RetryPolicy  # noqa: E402

FAST = RetryPolicy(budget=10.0, base_delay=0.05, max_delay=0.2, max_retry_after=5.0,
                   connect_timeout=2.0, read_timeout=5.0)


@pytest.fixture
def do_token() -> str:
    return "dop_v1_" + secrets.token_hex(32)


@pytest.fixture
def do_double_options() -> dict:
    return {}


@pytest.fixture
def do_double(do_token, do_double_options, monkeypatch):
    from tests.doubles.do_openapi import check_exchanges

    opts = {"active_delay": 0.2, "domains": ["example.test"]}
    opts.update(do_double_options)
    double = DigitalOceanDouble(token=do_token, **opts).start()
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", double.end_point)
    try:
        yield double
    finally:
        double.stop()
    problems = check_exchanges(double.exchanges)
    assert not problems, "exchanges outside DigitalOcean's OpenAPI document:\n" + "\n".join(problems[:20])


@pytest.fixture
def operator_key():
    key = asyncssh.generate_private_key("ssh-ed25519", comment="operator@test")
    return key, key.export_public_key("openssh").decode().strip()


@pytest.fixture
def make_provider(do_double, do_token, operator_key):
    def make(deployment: str = "demo", **kw) -> DigitalOceanProvider:
        args = dict(token=do_token, region="nyc3", image="debian-12-x64",
                    ssh_public_key=operator_key[1], policy=FAST, poll_interval=0.1, active_timeout=20.0)
        args.update(kw)
        return DigitalOceanProvider(deployment, **args)
    return make


def specs_for(names_roles, user_data: str = "#cloud-config\n{}\n") -> list[HostSpec]:
    sizes = {"mongo": "s-1vcpu-2gb", "web": "s-2vcpu-4gb"}
    return [HostSpec(n, r, sizes[r], user_data) for n, r in names_roles]


@pytest.fixture
def make_specs():
    return specs_for


@pytest.fixture
def production_specs() -> list[HostSpec]:
    return specs_for([("mongo1", "mongo"), ("mongo2", "mongo"), ("mongo3", "mongo"), ("web1", "web")])


@pytest.fixture
def lab_double(lab, do_token, monkeypatch):
    from tests.doubles.do_openapi import check_exchanges

    double = DigitalOceanDouble(token=do_token, lab=lab, lab_subnet=lab.subnet).start()
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", double.end_point)
    try:
        yield double
    finally:
        double.stop()          # destroys any lab host still standing
    assert not double.errors, double.errors
    problems = check_exchanges(double.exchanges)
    assert not problems, "\n".join(problems[:20])
