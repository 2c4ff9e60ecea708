"""Four planned lab hosts (mongo1..3, web1) and one outsider, as fresh droplets.

Shared by the lab tests (conftest.py) and bench/hardening.py. The hosts get what a
droplet gets: cloud-init user data with the wizard's pinned host key
(wizard.cloudinit) and the operator's key for root, nothing else.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wizard.plan import Plan  # noqa: E402

LAB_PREFIX = os.environ.get("RW_HARDENING_LAB_PREFIX", "rh")
LAB_SUBNET = os.environ.get("RW_HARDENING_LAB_SUBNET", "198.18.80.0/23")
PLANNED = ["mongo1", "mongo2", "mongo3", "web1"]
OUTSIDER = "other1"        # a droplet of the same account on the private network, not a peer


def make_key(folder: Path) -> Path:
    from tests.keys import operator_key
    return operator_key(folder, "rw-hardening-test")


def lab_available() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    try:
        from wizard.lab.lab import Lab  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the lab helper's progress
        return f"wizard.lab.lab is not importable: {e}"
    return None


def report(line: str) -> None:
    """A figure for the CI log (-s) and for $RW_REPORT_DIR/hardening.txt."""
    print(f"[hardening] {line}", flush=True)
    d = os.environ.get("RW_REPORT_DIR")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        with open(Path(d) / "hardening.txt", "a") as f:
            f.write(line + "\n")


def tcp_open(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LabCluster:
    """Four planned hosts (mongo1..3, web1) and one outsider, with a state and a plan."""

    def __init__(self, lab, plan: Plan, store, hosts: dict, tmp: Path):
        self.lab, self.plan, self.store, self.hosts, self.tmp = lab, plan, store, hosts, tmp
        self.runs: list = []

    def run_phase(self):
        import asyncio

        from recipes import hardening
        from wizard.engine import Runner

        events: list = []
        res = asyncio.run(Runner(self.plan, self.store, [hardening.PHASE], emit=events.append).run())
        self.runs.append((res, events))
        return res, events

    def exec(self, name: str, script: str, timeout: float = 60):
        return self.lab.exec(name, ["sh", "-c", script], timeout=timeout)


def boot_cluster(tmp: Path, prefix: str = LAB_PREFIX, subnet: str = LAB_SUBNET,
                 names: list[str] | None = None, log=print) -> LabCluster:
    """Boot the planned hosts and the outsider as fresh droplets would be: root login by the
    operator's key, the wizard's pinned host key, and nothing else."""
    from concurrent.futures import ThreadPoolExecutor

    from wizard import cloudinit, hostkeys
    from wizard.lab.errors import LabError
    from wizard.lab.lab import Lab
    from wizard.state import StateStore

    names = names or PLANNED + [OUTSIDER]
    os.environ["ROCKET_WIZARD_STATE_DIR"] = str(tmp / "state")
    key = make_key(tmp)
    pub = key.with_name(key.name + ".pub").read_text().strip()
    lab = Lab(prefix=prefix, subnet=subnet)
    t0 = time.monotonic()
    lab.up()
    for h in lab.hosts():          # a previous run's hosts: start from fresh droplets
        lab.destroy_host(h.name)
    keys = {n: hostkeys.generate() for n in names}

    def boot(n: str):
        # One retry: on a machine shared by several labs a boot can fail for reasons
        # of the machine (e.g. inotify instances running out); a fresh host then boots.
        for attempt in (1, 2):
            try:
                return lab.boot_host(n, cloudinit.user_data(*keys[n]), {"local-hostname": n, "public-keys": [pub]})
            except LabError as e:
                if attempt == 2:
                    raise
                log(f"lab {prefix}: {n} did not boot, trying a fresh one: {str(e).splitlines()[0]}")
                lab.destroy_host(n)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        booted = list(pool.map(boot, names))
    for n in names:
        lab.wait_cloud_init(n)
    log(f"lab {prefix}: {len(names)} hosts booted in {time.monotonic() - t0:.1f} s", flush=True)
    plan = Plan.model_validate(dict(name="rh-hardening", provider="lab", domain="chat.lab.test",
                                    admin_email="ops@lab.test", ssh_key=str(key), image="debian-12-x64",
                                    mongodb_version="8.0"))
    store = StateStore(plan.name)
    hosts = {}
    for h in booted:
        hosts[h.name] = h
        if h.name in PLANNED:
            rec = store.host(h.name, "web" if h.name.startswith("web") else "mongo")
            rec.public_ip, rec.private_ip = h.public_ip, h.private_ip
            rec.host_key, rec.ssh_user, rec.ready = keys[h.name][1], "root", True
    store.save()
    return LabCluster(lab, plan, store, hosts, tmp)


def ssh_argv(cluster: LabCluster, name: str, user: str, *cmd: str, options: tuple[str, ...] = ()) -> list[str]:
    """The OpenSSH client, pinned to the host's key, for tests that must look like an operator."""
    rec = cluster.store.state.hosts[name]
    kh = cluster.tmp / f"known_hosts_{name}"
    kh.write_text(f"{rec.public_ip} {rec.host_key}\n")
    return ["ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={kh}", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes",
            "-i", str(cluster.plan.ssh_key), *options, f"{user}@{rec.public_ip}", *cmd]


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
