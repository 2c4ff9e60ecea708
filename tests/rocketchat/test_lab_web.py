"""Rocket.Chat instances under systemd behind nginx with a pebble-issued certificate,
on a real lab host (systemd, apt, nginx, certbot), end to end through the engine.

The MongoDB side is the mongod stand-in on the lab's gateway (a replica set with
SCRAM users), so this test covers the web host alone; the whole production plan
runs in the lead's end-to-end test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from recipes import nginx, rocketchat
from tests.pebble import Pebble
from wizard.deploy import Deployment
from wizard.providers.lab import LabProvider
from wizard.state import StateStore

from tests._figures import figure

from .conftest import MongodStandin
from .helpers import make_plan
from .wsclient import WebSocket

pytestmark = pytest.mark.lab
DOMAIN = "chat.lab.test"


def ensure_mirror(lab, tree: Path) -> str:
    """Serve the tree from the lab's mirror. Test modules run one after another, so
    (re)starting the lab's one mirror on our root never pulls it from under another test."""
    return lab.start_mirror(tree)


def tls_context(pem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def https(ip: str, path: str, ctx: ssl.SSLContext, method="GET", body=None, headers=None):
    """A request to https://DOMAIN{path} sent to ip (SNI and Host = DOMAIN)."""
    import http.client

    class Conn(http.client.HTTPSConnection):
        def connect(self):
            sock = socket.create_connection((ip, 443), timeout=10)
            self.sock = ctx.wrap_socket(sock, server_hostname=DOMAIN)

    c = Conn(DOMAIN, 443, context=ctx, timeout=10)
    data = json.dumps(body) if body is not None else None
    c.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    return r.status, dict(r.getheaders()), (json.loads(raw) if raw.startswith("{") else raw)


@pytest.fixture(scope="module")
def site(lab, rc_tree, tmp_path_factory):
    # A fixed folder (per lab) so pebble's and mongod's logs can be read after a failure.
    work = Path(f"/var/tmp/rocket-wizard/rcweb-{lab.prefix}")
    Pebble(work / "pebble", lab.gateway, lab.gateway).stop_leftovers()     # of a killed run
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    mirror = ensure_mirror(lab, rc_tree)
    mongo = MongodStandin(work, bind_ip=f"127.0.0.1,{lab.gateway}", replset_host=lab.gateway)
    try:
        peb = Pebble(work / "pebble", listen_ip=lab.gateway, web_ip=lab.gateway).start()
    except Exception:
        mongo.stop()
        raise
    old_env = {k: os.environ.get(k) for k in ("RW_DNS_RESOLVER", "ROCKET_WIZARD_STATE_DIR")}
    os.environ["RW_DNS_RESOLVER"] = peb.dns
    os.environ["ROCKET_WIZARD_STATE_DIR"] = str(work / "state")
    mp = pytest.MonkeyPatch()
    mp.setattr(rocketchat, "mongo_url_for", lambda ctx: mongo.url)
    plan = make_plan(work, name="rcweb", mongo_members=1, app_hosts=1, instances_per_host=2,
                     domain=DOMAIN, acme_server=peb.directory, acme_ca_bundle=peb.ca_cert,
                     mirrors={"rocketchat_releases": f"{mirror}/rocketchat", "node": f"{mirror}/node",
                              "deno": f"{mirror}/deno"})
    store = StateStore(plan.name)
    provider = LabProvider(plan.name, lab=lab, ssh_public_key=plan.public_key())
    dep = Deployment(plan, store, provider, phases=[rocketchat.PHASE, nginx.PHASE])
    # The domain points at the web host once it exists: provision first, then add the record.
    import asyncio

    try:
        events = []
        first = asyncio.run(dep.apply(lambda e: events.append(e), phases=[]))
        assert first.ok, "\n".join(f"{e.host}: {e.reason}" for e in events
                                    if getattr(e, "status", "") == "failed") or events[-5:]
        web = store.state.hosts["web1"]
        peb.add_a(DOMAIN, web.public_ip)
        t0 = time.monotonic()
        result = asyncio.run(dep.apply())
        elapsed = time.monotonic() - t0
        yield {"label": "rocketchat+web phases (1 web host, mongod stand-in)", "dep": dep, "plan": plan, "store": store, "web": web, "lab": lab, "pebble": peb,
               "mongo": mongo, "result": result, "elapsed": elapsed, "work": work,
               "lab_name": f"{plan.name}-web1"}
    finally:
        try:
            provider.destroy(progress=lambda m: None)
        finally:
            mp.undo()
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            peb.stop()
            mongo.stop()


def sh(site, cmd: str) -> subprocess.CompletedProcess:
    return site["lab"].exec(site["lab_name"], cmd, timeout=120)


def test_first_run_succeeds(site):
    r = site["result"]
    if not r.ok:
        log = sh(site, "tail -40 /var/log/letsencrypt/letsencrypt.log; journalctl -u 'rocketchat@*' -n 20 --no-pager")
        pytest.fail(f"{r.failures}\n{log.stdout}")
    figure(f"{site['label']}: first run (after provisioning)",
           f"{site['elapsed']:.1f} s, {sum(r.round_trips.values())} round trips")
    changed = {s for _, s, _ in r.changes}
    assert {"rocketchat.node", "rocketchat.deno", "rocketchat.bundle", "rocketchat.instances",
            "tls.certbot", "web.site"} <= changed


def test_layout_user_and_env_file(site):
    out = sh(site, "readlink /opt/Rocket.Chat/current; getent passwd rocketchat; "
                   "passwd -S rocketchat | cut -d' ' -f2; stat -c '%a %U' /etc/rocketchat/rocketchat.env; "
                   "ps -o user= -p $(systemctl show -p MainPID --value rocketchat@3001)").stdout.split("\n")
    assert out[0] == "8.2.0"
    assert out[1].endswith(":/usr/sbin/nologin")
    assert out[2] == "L"                                 # locked
    assert out[3] == "600 root"
    assert out[4].strip() == "rocketchat"
    env = sh(site, "cat /etc/rocketchat/rocketchat.env /etc/rocketchat/instance-3002.env").stdout
    for needle in ("ROOT_URL=https://chat.lab.test", "HTTP_FORWARDED_COUNT=1", "TCP_PORT=4002",
                   "replicaSet=rs0", "authSource=", "OVERWRITE_SETTING_Show_Setup_Wizard=completed"):
        assert needle in env


def start_and_wait(site, ports) -> None:
    for port in ports:
        sh(site, f"systemctl start rocketchat@{port}")
    for port in ports:
        assert sh(site, f"curl -sf -o /dev/null -w '%{{http_code}}' --retry 30 --retry-connrefused "
                        f"--retry-delay 1 http://127.0.0.1:{port}/livez").stdout == "200"


def test_https_api_info_from_every_instance(site):
    """Only one instance up at a time: nginx must reach each of them."""
    ctx = tls_context(site["pebble"].issuing_roots())
    ip = site["web"].public_ip
    ports = site["plan"].ports()
    for port in ports:
        others = [p for p in ports if p != port]
        sh(site, "systemctl stop " + " ".join(f"rocketchat@{p}" for p in others))
        try:
            start_and_wait(site, [port])
            status, _, body = https(ip, "/api/info", ctx)
            assert (status, body) == (200, {"version": "8.2.0", "success": True}), port
        finally:
            start_and_wait(site, others)


def test_hsts_and_websocket_through_nginx(site):
    ctx = tls_context(site["pebble"].issuing_roots())
    status, headers, _ = https(site["web"].public_ip, "/livez", ctx)
    assert status == 200
    assert headers.get("Strict-Transport-Security") == "max-age=63072000"
    ws = WebSocket(site["web"].public_ip, 443, tls=ctx, server_name=DOMAIN)
    try:
        assert ws.ddp_connect()["msg"] == "connected"
    finally:
        ws.close()


def test_http_redirects_to_https(site):
    with socket.create_connection((site["web"].public_ip, 80), timeout=10) as s:
        s.sendall(f"GET /api/info?x=1 HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head = answer.decode().split("\r\n")
    assert head[0].split()[1] == "301"
    assert f"Location: https://{DOMAIN}/api/info?x=1" in head


def test_admin_exists_and_signup_is_not_admin(site):
    ctx = tls_context(site["pebble"].issuing_roots())
    ip = site["web"].public_ip
    password = site["store"].secrets.get(rocketchat.ADMIN_SECRET)
    status, _, login = https(ip, "/api/v1/login", ctx, "POST", {"user": "admin", "password": password})
    assert status == 200 and "admin" in login["data"]["me"]["roles"]
    status, _, reg = https(ip, "/api/v1/users.register", ctx, "POST",
                           {"username": "eve", "email": "eve@lab.test", "pass": "eve-pass-1", "name": "Eve",
                            "roles": ["admin"]})
    assert status == 200 and reg["user"]["roles"] == ["user"]
    status, _, login = https(ip, "/api/v1/login", ctx, "POST", {"user": "eve", "password": "eve-pass-1"})
    assert status == 200 and login["data"]["me"]["roles"] == ["user"]
    if site.get("mongo"):
        assert site["mongo"].root.rocketchat.users.count_documents({"roles": "admin"}) == 1


def test_renewal_is_the_timer_with_a_reload_hook(site):
    out = sh(site, "systemctl is-enabled certbot.timer; systemctl is-active certbot.timer; "
                   "cat /etc/letsencrypt/renewal-hooks/deploy/50-reload-nginx; "
                   "grep -c . /etc/letsencrypt/renewal/chat.lab.test.conf").stdout
    assert out.startswith("enabled\nactive\n")
    assert "nginx -t -q && systemctl reload nginx" in out
    # pebble's certificates name an OCSP responder: the site staples.
    site_conf = sh(site, "cat /etc/nginx/sites-available/rocketchat").stdout
    assert "ssl_stapling on;" in site_conf


@pytest.mark.skipif(not shutil.which("testssl"), reason="testssl.sh (Debian package testssl.sh) not installed")
def test_testssl_no_high_or_critical_and_no_old_tls(site):
    work = site["work"]
    roots = work / "pebble-roots.pem"
    roots.write_text(site["pebble"].issuing_roots())
    out = work / "testssl.json"
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    # Protocols, cipher categories, forward secrecy, server preference and defaults, headers,
    # vulnerabilities; client simulation (-c) is left out: it grades browsers, not us.
    p = subprocess.run(["testssl", "--quiet", "--color", "0", "--warnings", "off", "--add-ca", str(roots),
                        "-p", "-s", "-f", "-P", "-S", "-h", "-U",
                        "--ip", site["web"].public_ip, "--jsonfile", str(out), f"https://{DOMAIN}/"],
                       capture_output=True, text=True, timeout=900)
    figure(f"{site['label']}: testssl.sh run", f"{time.monotonic() - t0:.1f} s")
    findings = json.loads(out.read_text())
    if isinstance(findings, dict):
        findings = findings.get("scanResult", [findings])
    by_id = {f["id"]: f for f in findings}
    bad = [f"{f['id']}: {f['finding']}" for f in findings if f.get("severity") in ("HIGH", "CRITICAL")]
    assert not bad, "\n".join(bad) + "\n" + p.stdout[-3000:]
    assert "not offered" in by_id["TLS1"]["finding"]
    assert "not offered" in by_id["TLS1_1"]["finding"]
    assert by_id["TLS1_2"]["finding"].startswith("offered")
    assert by_id["TLS1_3"]["finding"].startswith("offered")


def test_rerun_changes_nothing_and_keeps_nginx(site):
    import asyncio

    pid = sh(site, "systemctl show -p MainPID --value nginx").stdout.strip()
    t0 = time.monotonic()
    marks: list[tuple[float, str]] = []

    def mark(e) -> None:
        name = type(e).__name__
        if name in ("PhaseStarted", "StepStarted", "RunFinished"):
            marks.append((time.monotonic(), getattr(e, "phase", "") + " " + getattr(e, "step", name)))
    again = asyncio.run(site["dep"].apply(mark))
    total = time.monotonic() - t0
    # Where the time went: the three longest gaps between events.
    gaps = sorted(((b[0] - a[0], a[1]) for a, b in zip([(t0, "start")] + marks, marks)), reverse=True)[:3]
    figure(f"{site['label']}: rerun with nothing to do",
           f"{total:.2f} s, {sum(again.round_trips.values())} round trips; longest: "
           + ", ".join(f"{what.strip()} {secs:.2f} s" for secs, what in gaps))
    assert again.ok, again.failures
    assert again.changed == 0, again.changes
    assert sh(site, "systemctl show -p MainPID --value nginx").stdout.strip() == pid


def served_serial(site) -> int:
    ctx = tls_context(site["pebble"].issuing_roots())
    with socket.create_connection((site["web"].public_ip, 443), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            der = tls.getpeercert(binary_form=True)
    from cryptography import x509
    return x509.load_der_x509_certificate(der).serial_number


def test_renewal_deploy_hook_reloads_nginx(site):
    """A renewal as the timer's service runs it (its environment, its deploy hook): the new
    certificate is served, and nginx was reloaded, not restarted."""
    before = served_serial(site)
    pid = sh(site, "systemctl show -p MainPID --value nginx").stdout.strip()
    env = sh(site, "systemctl show -p Environment --value certbot.service").stdout.strip()
    r = sh(site, f"env {env} certbot renew --force-renewal -q --no-random-sleep-on-renew; echo rc=$?")
    assert r.stdout.strip().endswith("rc=0"), r.stdout + r.stderr
    deadline = time.monotonic() + 10
    while served_serial(site) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served_serial(site) != before
    assert sh(site, "systemctl show -p MainPID --value nginx").stdout.strip() == pid


def test_one_instance_stopped_site_still_answers(site):
    ctx = tls_context(site["pebble"].issuing_roots())
    sh(site, "systemctl stop rocketchat@3001")
    try:
        for _ in range(5):
            assert https(site["web"].public_ip, "/api/info", ctx)[0] == 200
    finally:
        start_and_wait(site, [3001])


def test_a_broken_site_is_rolled_back_and_not_loaded(site):
    """nginx -t guards every change: a bad file is put back and nginx keeps serving."""
    import asyncio

    sh(site, "sed -i 's/ip_hash;/ip_hash; bogus_directive on;/' /etc/nginx/sites-available/rocketchat")
    res = asyncio.run(site["dep"].apply())     # the check sees the drift and rewrites the file
    assert res.ok and ("web1", "web.site") in {(h, s) for h, s, _ in res.changes}
    assert "bogus_directive" not in sh(site, "cat /etc/nginx/sites-available/rocketchat").stdout
    assert sh(site, "nginx -t -q && echo ok").stdout.strip() == "ok"


def test_upgrade_rolls_through_and_rolls_back(site):
    """A new release: installed beside the old one, `current` moves, `previous` keeps the
    old one; instances restart one at a time; planning the old release again rolls back
    without a download."""
    import asyncio

    ctx = tls_context(site["pebble"].issuing_roots())
    ip = site["web"].public_ip
    plan = site["plan"]
    plan.rocketchat_version = "8.2.1"
    try:
        res = asyncio.run(site["dep"].apply())
        assert res.ok, res.failures
        changed = {s for _, s, _ in res.changes}
        assert {"rocketchat.bundle", "rocketchat.current", "rocketchat.instances"} <= changed
        assert sh(site, "readlink /opt/Rocket.Chat/current; readlink /opt/Rocket.Chat/previous").stdout.split() \
            == ["8.2.1", "8.2.0"]
        assert https(ip, "/api/info", ctx)[2] == {"version": "8.2.1", "success": True}
    finally:
        plan.rocketchat_version = "8.2.0"
    res = asyncio.run(site["dep"].apply())
    assert res.ok, res.failures
    changed = {s for _, s, _ in res.changes}
    assert "rocketchat.bundle" not in changed and "rocketchat.current" in changed
    assert https(ip, "/api/info", ctx)[2] == {"version": "8.2.0", "success": True}
