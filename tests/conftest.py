"""Root conftest: only the shared lab fixtures (systemd-nspawn hosts; see docs/lab.md).

`lab` (session): a Lab that is up; prefix/subnet from RW_LAB_PREFIX / RW_LAB_SUBNET
(default rwt / 198.19.0.0/23). Torn down (lab.down()) before use, since CI may find
leftovers of an earlier run, and at the end. Skips when the machine cannot run it
(not root, tools missing) unless CI=true, where that is an error.

`lab_hosts` (function): factory booting hosts in parallel, destroyed after the test:
    hosts = lab_hosts(["mongo1", "web1"], user_data_for=lambda name: "#cloud-config\\n...")
    hosts = lab_hosts(2)            # names t1, t2 (unique within the session)
"""

from __future__ import annotations

import itertools
import os

import pytest

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def lab():
    from wizard.lab.lab import Lab, LabError

    try:
        Lab.check()
    except LabError as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the lab cannot run on this CI machine: {e}")
        pytest.skip(f"lab unavailable: {e}")
    lab = Lab(prefix=os.environ.get("RW_LAB_PREFIX", "rwt"),
              subnet=os.environ.get("RW_LAB_SUBNET", "198.19.0.0/23"))
    lab.down()
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab_hosts(lab):
    booted: list[str] = []

    def boot(names, user_data_for=None, meta_data_for=None, timeout: float = 120):
        if isinstance(names, int):
            names = [f"t{next(_counter)}" for _ in range(names)]
        names = list(names)
        booted.extend(names)
        return lab.boot_hosts(names, user_data_for=user_data_for, meta_data_for=meta_data_for,
                              timeout=timeout)

    yield boot
    for name in booted:
        lab.destroy_host(name)
