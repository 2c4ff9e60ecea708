"""The whole production plan, end to end, as an operator would run it.

Droplets through the DigitalOcean API double (each one a lab host booted with real
cloud-init), then hardening, the MongoDB replica set, Rocket.Chat under systemd,
nginx and a certificate from pebble (Let's Encrypt's test server), all driven by
the headless CLI (`rocket-wizard apply --answers FILE --yes`). The stand-ins for
what cannot be downloaded here (mongod, the Rocket.Chat bundle, Node, Deno) are
served by the lab mirror, as an air-gapped install would be.

The story: the first apply stops at the TLS phase because the domain does not
point at the web droplet yet (a clear one-line reason); the operator points it;
the second apply resumes and finishes; a third apply changes nothing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from tests._figures import figure

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "chat.lab.test"
NAME = "e2e"
MONGO_VERSION = "8.0.4"
WORK = Path("/var/tmp/rocket-wizard/e2e")


def build_mirror(lab, work: Path) -> str:
    """mongodb-apt (stand-in packages, signed repo) + the Rocket.Chat release tree."""
    from wizard.lab.mirror import build_apt_repo

    rc_tree = Path(os.environ.get("RW_RC_TREE", "/var/tmp/rocket-wizard/rc-tree"))
    subprocess.run([sys.executable, str(ROOT / "tests/standins/rocketchat/build_tree.py"), str(rc_tree)],
                   check=True, capture_output=True, text=True)
    debs = subprocess.run([str(ROOT / "tests/standins/mongod/build-deb.sh"), MONGO_VERSION, str(work / "debs")],
                          check=True, capture_output=True, text=True).stdout.split()
    series = ".".join(MONGO_VERSION.split(".")[:2])
    # Another test of this session may already serve a mirror on the gateway: add to its root.
    st = lab.mirror_status()
    if st and st.get("running"):
        root, url = Path(st["root"]), st["url"]
    else:
        root = work / "mirror"
        root.mkdir(parents=True, exist_ok=True)
        url = None
    apt = root / "mongodb-apt"
    if not (apt / "dists" / "bookworm" / "mongodb-org" / series).exists():
        build_apt_repo(apt, f"bookworm/mongodb-org/{series}", "main", "amd64", debs, work / "gpg")
    for name in ("rocketchat", "node", "deno"):
        link = root / name
        if not link.exists():
            link.symlink_to(rc_tree / name)
    return url or lab.start_mirror(root)


def https_get(ip: str, path: str, ca_pem: str) -> tuple[int, dict, str]:
    ctx = ssl.create_default_context(cadata=ca_pem)

    class Conn(http.client.HTTPSConnection):
        def connect(self):
            self.sock = ctx.wrap_socket(socket.create_connection((ip, 443), timeout=10), server_hostname=DOMAIN)

    c = Conn(DOMAIN, 443, context=ctx, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def cli(answers: Path, env: dict, log: Path, *args: str) -> tuple[int, float, str]:
    t0 = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n===== rocket-wizard {' '.join(args)}\n")
        out.flush()
        r = subprocess.run([sys.executable, "-m", "wizard.cli", *args, "--answers", str(answers)],
                           env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           cwd=ROOT, timeout=1800)
    text = log.read_text()
    return r.returncode, time.monotonic() - t0, text[text.rfind("===== rocket-wizard"):]


@pytest.fixture(scope="module")
def production(lab):
    from tests.doubles.digitalocean import DigitalOceanDouble
    from tests.pebble import Pebble

    Pebble(WORK / "pebble", lab.gateway, lab.gateway).stop_leftovers()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    mirror = build_mirror(lab, WORK)
    peb = Pebble(WORK / "pebble", listen_ip=lab.gateway, web_ip=lab.gateway).start()
    token = "dop_v1_" + os.urandom(32).hex()
    double = DigitalOceanDouble(token=token, lab=lab, lab_subnet=lab.subnet).start()

    from tests.keys import operator_key
    operator_key(WORK, "operator@e2e")
    answers = WORK / "production.toml"
    answers.write_text(tomli_w.dumps({
        "name": NAME, "provider": "digitalocean", "region": "nyc3", "image": "debian-12-x64",
        "mongo_members": 3, "app_hosts": 1, "instances_per_host": 2,
        "domain": DOMAIN, "admin_email": "ops@lab.test", "admin_username": "admin", "sudo_user": "rocket",
        "rocketchat_version": "8.2.0", "mongodb_version": "8.0", "ssh_key": str(WORK / "id_ed25519"),
        "backups": "weekly", "acme_server": peb.directory, "acme_ca_bundle": str(peb.ca_cert),
        "sizes": {"mongo": "s-1vcpu-2gb", "web": "s-2vcpu-4gb"},
        "mirrors": {"mongodb_apt": f"{mirror}/mongodb-apt", "rocketchat_releases": f"{mirror}/rocketchat",
                    "node": f"{mirror}/node", "deno": f"{mirror}/deno"},
    }))
    env = dict(os.environ, DIGITALOCEAN_END_POINT=double.end_point, DIGITALOCEAN_ACCESS_TOKEN=token,
               ROCKET_WIZARD_STATE_DIR=str(WORK / "state"), RW_DNS_RESOLVER=peb.dns, HOME=str(WORK))
    world = {"lab": lab, "double": double, "pebble": peb, "answers": answers, "env": env, "token": token,
             "log": WORK / "cli.log", "timings": {}}
    try:
        yield world
    finally:
        double.stop()            # destroys the droplets' lab hosts
        peb.stop()


@pytest.fixture(scope="module")
def applied(production):
    w = production
    rc1, t1, out1 = cli(w["answers"], w["env"], w["log"], "apply", "--yes")
    w["timings"]["first apply (until DNS)"] = t1
    w["first"] = (rc1, out1)
    from wizard.state import StateStore
    os.environ["ROCKET_WIZARD_STATE_DIR"] = w["env"]["ROCKET_WIZARD_STATE_DIR"]
    store = StateStore(NAME)
    web = store.state.hosts.get("web1")
    assert web is not None and web.public_ip, out1[-3000:]
    w["pebble"].add_a(DOMAIN, web.public_ip)          # the operator points the domain
    rc2, t2, out2 = cli(w["answers"], w["env"], w["log"], "apply", "--yes")
    w["timings"]["second apply (resumed)"] = t2
    w["second"] = (rc2, out2)
    rc3, t3, out3 = cli(w["answers"], w["env"], w["log"], "apply", "--yes")
    w["timings"]["third apply (nothing to do)"] = t3
    w["third"] = (rc3, out3)
    w["store"] = StateStore(NAME)
    total = t1 + t2
    figure("e2e production plan: droplets to TLS (s)", f"{total:.0f}")
    for k, v in w["timings"].items():
        figure(f"e2e {k} (s)", f"{v:.1f}")
    return w


def test_first_apply_stops_clearly_at_dns(applied):
    rc, out = applied["first"]
    assert rc == 1, out[-3000:]
    assert f"{DOMAIN} resolves to" in out and "point its A record" in out, out[-3000:]
    # everything before TLS is done
    for phase in ("hardening", "mongo.", "rocketchat."):
        assert phase in out


def test_four_droplets_exactly_tagged_and_active(applied):
    droplets = [d for d in applied["double"].droplets.values() if f"rw-{NAME}" in d["tags"]]
    assert sorted(d["name"] for d in droplets) == [f"{NAME}-mongo1", f"{NAME}-mongo2", f"{NAME}-mongo3",
                                                   f"{NAME}-web1"]
    assert all(d["status"] == "active" for d in droplets)


def test_second_apply_resumes_and_finishes(applied):
    rc, out = applied["second"]
    assert rc == 0, out[-4000:]
    assert "resuming the unfinished run" in out
    assert f"done: https://{DOMAIN}" in out
    pw = applied["store"].secrets.get("rocketchat_admin_password")
    assert f"admin: admin / {pw}   (shown once" in out


def test_https_answers_through_nginx_with_the_pebble_certificate(applied):
    web = applied["store"].state.hosts["web1"]
    roots = applied["pebble"].issuing_roots()
    status, headers, body = https_get(web.public_ip, "/api/info", roots)
    assert status == 200, body
    assert json.loads(body)["version"] == "8.2.0"
    assert "max-age=" in headers.get("strict-transport-security", "")


def test_third_apply_changes_nothing(applied):
    rc, out = applied["third"]
    assert rc == 0, out[-3000:]
    assert " 0 changed, 0 failed" in out, out[-3000:]
    assert "shown once" not in out and applied["store"].secrets.get("rocketchat_admin_password") not in out
    line = [x for x in out.splitlines() if "round trips:" in x][-1]
    figure("e2e no-op rerun", line.split(": ", 1)[1])


def test_status_shows_every_part(applied):
    env = applied["env"]
    r = subprocess.run([sys.executable, "-m", "wizard.cli", "status", "--deployment", NAME], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for h in ("mongo1", "mongo2", "mongo3", "web1"):
        assert f"{h} " in out
    assert out.count("PRIMARY") == 1 and out.count("SECONDARY") == 2, out
    assert out.count("healthy") == 2, out
    assert "certificate:" in out


def test_token_is_nowhere_on_disk(applied):
    token = applied["token"]
    for p in (WORK / "state").rglob("*"):
        if p.is_file():
            assert token not in p.read_text(errors="replace"), p
    assert token not in applied["log"].read_text()


def test_done_screen_shows_the_url(applied):
    """The Done screen of the real app, over this deployment's real state."""
    from screens.app import RocketWizardApp
    from screens.done import DoneScreen
    from wizard.deploy import Deployment
    from wizard.plan import load_plan

    plan = load_plan(applied["answers"])

    async def go():
        app = RocketWizardApp(answers=applied["answers"])
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(DoneScreen(Deployment(plan, applied["store"])))
            await pilot.pause()
            return str(app.screen.query_one("#next-steps").render())

    text = asyncio.run(go())
    assert f"https://{DOMAIN}" in text
    assert str(applied["store"].secrets.path) in text.replace("\n  ", "")
