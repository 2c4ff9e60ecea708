"""A whole production plan, end to end on the lab: 3 MongoDB hosts and 1 web host,
every phase (hardening, MongoDB, Rocket.Chat, nginx + Let's Encrypt through pebble),
then every check of the web test (imported below: same checks, this module's site).

What is not real here: the DigitalOcean API (the lab provider boots the hosts with
the same cloud-init user data), mongod (the stand-in, packaged like mongodb-org and
served as a signed apt repository), the Rocket.Chat bundle (the stand-in) and the
CA (pebble). Everything else is: systemd, apt, ufw, fail2ban, nginx, certbot.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests._figures import figure
from tests.pebble import Pebble
from wizard.deploy import Deployment
from wizard.providers.lab import LabProvider
from wizard.state import StateStore

from .helpers import make_plan
# The checks, collected again here: they run against this module's `site`.
from .test_lab_web import DOMAIN, ensure_mirror
from .test_lab_web import test_first_run_succeeds  # noqa: F401  (collected in this order)
from .test_lab_web import test_layout_user_and_env_file  # noqa: F401
from .test_lab_web import test_https_api_info_from_every_instance  # noqa: F401
from .test_lab_web import test_hsts_and_websocket_through_nginx  # noqa: F401
from .test_lab_web import test_http_redirects_to_https  # noqa: F401
from .test_lab_web import test_admin_exists_and_signup_is_not_admin  # noqa: F401
from .test_lab_web import test_renewal_is_the_timer_with_a_reload_hook  # noqa: F401
from .test_lab_web import test_testssl_no_high_or_critical_and_no_old_tls  # noqa: F401
from .test_lab_web import test_rerun_changes_nothing_and_keeps_nginx  # noqa: F401
from .test_lab_web import test_renewal_deploy_hook_reloads_nginx  # noqa: F401
from .test_lab_web import test_one_instance_stopped_site_still_answers  # noqa: F401
from .test_lab_web import test_a_broken_site_is_rolled_back_and_not_loaded  # noqa: F401

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
MONGO_VERSION = "8.0.4"


def mongodb_repo(work: Path, tree: Path) -> None:
    """The mongod stand-in as mongodb-org packages in a signed repo like repo.mongodb.org."""
    from wizard.lab.mirror import build_apt_repo

    for tool in ("dpkg-deb", "apt-ftparchive", "gpg"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} missing (apt-get install -y dpkg-dev apt-utils gnupg)")
    debs = subprocess.run([str(ROOT / "tests/standins/mongod/build-deb.sh"), MONGO_VERSION, str(work / "debs")],
                          check=True, capture_output=True, text=True).stdout.split()
    series = ".".join(MONGO_VERSION.split(".")[:2])
    shutil.rmtree(tree / "mongodb-apt", ignore_errors=True)
    build_apt_repo(tree / "mongodb-apt", f"bookworm/mongodb-org/{series}", "main", "amd64", debs, work / "gpg")


@pytest.fixture(scope="module")
def site(lab, rc_tree, tmp_path_factory):
    work = Path(f"/var/tmp/rocket-wizard/rce2e-{lab.prefix}")
    Pebble(work / "pebble", lab.gateway, lab.gateway).stop_leftovers()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # One mirror root for everything: the Rocket.Chat tree plus the MongoDB apt repo.
    mirror_root = work / "mirror"
    mirror_root.mkdir()
    for name in ("rocketchat", "node", "deno"):
        (mirror_root / name).symlink_to(rc_tree / name)
    mongodb_repo(work, mirror_root)
    mirror = ensure_mirror(lab, mirror_root)
    peb = Pebble(work / "pebble", listen_ip=lab.gateway, web_ip=lab.gateway).start()
    old_env = {k: os.environ.get(k) for k in ("RW_DNS_RESOLVER", "ROCKET_WIZARD_STATE_DIR")}
    os.environ["RW_DNS_RESOLVER"] = peb.dns
    os.environ["ROCKET_WIZARD_STATE_DIR"] = str(work / "state")
    plan = make_plan(work, name="rce2e", image="debian-12-x64", mongo_members=3, app_hosts=1,
                     instances_per_host=None, domain=DOMAIN, mongodb_version="8.0",
                     rocketchat_version="8.2.0", acme_server=peb.directory, acme_ca_bundle=peb.ca_cert,
                     mirrors={"rocketchat_releases": f"{mirror}/rocketchat", "node": f"{mirror}/node",
                              "deno": f"{mirror}/deno", "mongodb_apt": f"{mirror}/mongodb-apt"})
    store = StateStore(plan.name)
    provider = LabProvider(plan.name, lab=lab, ssh_public_key=plan.public_key())
    dep = Deployment(plan, store, provider)               # recipes.PHASES: the whole runbook
    try:
        t0 = time.monotonic()
        events: list = []
        first = asyncio.run(dep.apply(events.append, phases=[]))
        assert first.ok, "\n".join(f"{e.host}: {e.reason}" for e in events
                                    if getattr(e, "status", "") == "failed") or events[-5:]
        provisioned = time.monotonic() - t0
        web = store.state.hosts["web1"]
        peb.add_a(DOMAIN, web.public_ip)
        t1 = time.monotonic()
        phase_t: dict[str, float] = {}

        def timing(e) -> None:
            name = type(e).__name__
            if name == "PhaseStarted":
                phase_t[e.phase] = time.monotonic()
            elif name == "PhaseFinished":
                phase_t[e.phase] = time.monotonic() - phase_t[e.phase]
        result = asyncio.run(dep.apply(timing))
        elapsed = time.monotonic() - t1
        for ph, secs in phase_t.items():
            figure(f"production plan on the lab: phase {ph}", f"{secs:.1f} s")
        figure("production plan on the lab (3 mongo + 1 web): provisioning 4 hosts", f"{provisioned:.1f} s")
        figure("production plan on the lab: whole first run (provisioning + every phase)",
               f"{provisioned + elapsed:.1f} s")
        yield {"label": "production plan (3 mongo + 1 web)", "dep": dep, "plan": plan, "store": store,
               "web": web, "lab": lab, "pebble": peb, "mongo": None, "result": result, "elapsed": elapsed,
               "work": work, "lab_name": f"{plan.name}-web1"}
    finally:
        try:
            if not os.environ.get("RW_KEEP_LAB"):
                provider.destroy(progress=lambda m: None)
        finally:
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            peb.stop()


def test_every_phase_ran(site):
    r = site["result"]
    assert r.ok, r.failures
    hosts_changed = {h for h, _, _ in r.changes}
    assert {"mongo1", "mongo2", "mongo3", "web1"} <= hosts_changed
    env = site["lab"].exec(site["lab_name"], "cat /etc/rocketchat/rocketchat.env", timeout=30).stdout
    mongo_url = next(line for line in env.splitlines() if line.startswith("MONGO_URL="))
    for member in ("mongo1", "mongo2", "mongo3"):
        assert member in mongo_url
    assert "replicaSet=rs0" in mongo_url and "authSource=" in mongo_url
