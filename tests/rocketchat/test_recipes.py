"""Rocket.Chat, nginx and TLS steps on recorded facts (no SSH), and the rendered
nginx site checked by the real `nginx -t` on this machine."""

import shutil
import subprocess
import textwrap

import pytest

from recipes import nginx, rocketchat, tls
from wizard.engine import Change, NoChange, Skip, StepError
from wizard.ops import Put

from .helpers import RELEASE, FakeCtx, inventory, make_plan, secrets

MONGO_URL = ("mongodb://rocketchat:pw@mongo1.chat.lab.test:27017,mongo2.chat.lab.test:27017,"
             "mongo3.chat.lab.test:27017/rocketchat?replicaSet=rs0&authSource=rocketchat")


@pytest.fixture(autouse=True)
def _release(monkeypatch):
    monkeypatch.setattr(rocketchat, "release_for", lambda plan: RELEASE)
    monkeypatch.setattr(rocketchat, "mongo_url_for", lambda ctx: MONGO_URL)


@pytest.fixture
def plan(tmp_path):
    return make_plan(tmp_path)


def ctx_for(plan, tmp_path, facts=None, web=1, host="web1"):
    return FakeCtx(plan, inventory(web), host, facts or {}, secrets(tmp_path))


# ---------------------------------------------------------------- rocketchat
def test_env_file_has_everything_and_generates_admin_password_once(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path)
    env = rocketchat.render_env(ctx, RELEASE)
    lines = dict(line.split("=", 1) for line in env.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["ROOT_URL"] == "https://chat.lab.test"
    assert lines["MONGO_URL"] == MONGO_URL
    assert lines["BIND_IP"] == "127.0.0.1"
    assert lines["INSTANCE_IP"] == "198.18.65.21"
    assert lines["HTTP_FORWARDED_COUNT"] == "1"
    assert lines["OVERWRITE_SETTING_Show_Setup_Wizard"] == "completed"
    assert lines["ADMIN_USERNAME"] == "admin" and lines["ADMIN_EMAIL"] == "ops@lab.test"
    assert lines["PATH"].startswith("/opt/node/v22.22.3/bin:/opt/deno/v2.6.10:")
    password = ctx.secrets.get(rocketchat.ADMIN_SECRET)
    assert password and lines["ADMIN_PASS"] == password
    assert rocketchat.render_env(ctx, RELEASE) == env       # the same password next time
    assert rocketchat.render_instance_env(3002) == (
        "# Rocket.Chat instance settings. Written by rocket-wizard.\nPORT=3002\nTCP_PORT=4002\n")


def test_env_values_with_spaces_are_quoted():
    assert rocketchat._q("Rocket Admin") == '"Rocket Admin"'
    assert rocketchat._q('a"b$c') == '"a\\"b\\$c"'
    with pytest.raises(StepError):
        rocketchat._q("a\nb")


def test_several_web_hosts_bind_to_private_address(tmp_path):
    plan = make_plan(tmp_path, app_hosts=2)
    inv = inventory(2)
    assert rocketchat.bind_ip(plan, inv.get("web2")) == "198.18.65.22"
    assert nginx.upstream_servers(plan, inv) == [
        "198.18.65.21:3001", "198.18.65.21:3002", "198.18.65.22:3001", "198.18.65.22:3002"]


def test_unit_runs_pinned_node_as_rocketchat():
    unit = rocketchat.render_unit(RELEASE)
    assert "ExecStart=/opt/node/v22.22.3/bin/node /opt/Rocket.Chat/current/main.js" in unit
    assert "User=rocketchat" in unit
    assert "EnvironmentFile=/etc/rocketchat/instance-%i.env" in unit
    assert "${" not in unit


def test_config_step_writes_env_0600_and_is_quiet_when_equal(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path)
    step = rocketchat.Config()
    out = step.check(ctx)
    assert isinstance(out, Change)
    puts = {op.path: op for op in out.ops if isinstance(op, Put)}
    assert puts[rocketchat.SHARED_ENV].mode == 0o600 and puts[rocketchat.SHARED_ENV].secret
    assert set(puts) == {rocketchat.UNIT_PATH, rocketchat.SHARED_ENV,
                         "/etc/rocketchat/instance-3001.env", "/etc/rocketchat/instance-3002.env"}
    assert any(getattr(op, "script", "") == "systemctl daemon-reload" for op in out.ops)
    sums = "\n".join(f"{rocketchat._sha(op.data)}  {p}" for p, op in puts.items())
    modes = "\n".join(f"{op.mode:o} root {p}" for p, op in puts.items() if p.endswith(".env"))
    ctx.facts["rc_config"] = sums + "\n" + modes
    assert isinstance(step.check(ctx), NoChange)
    ctx.facts["rc_config"] = sums + "\n" + modes.replace("600 root /etc/rocketchat/rocketchat.env",
                                                         "644 root /etc/rocketchat/rocketchat.env")
    out = step.check(ctx)
    assert isinstance(out, Change) and out.summary == "write /etc/rocketchat/rocketchat.env"


def instances_fact(units, current="/opt/Rocket.Chat/8.2.0", mtime=1000):
    lines = [f"current {current}", "now 5000"]
    for f in ("/etc/systemd/system/rocketchat@.service", "/etc/rocketchat/rocketchat.env",
              "/etc/rocketchat/instance-3001.env", "/etc/rocketchat/instance-3002.env"):
        lines.append(f"mtime {mtime} {f}")
    for port, (active, enabled, cwd, start) in units.items():
        lines.append(f"unit rocketchat@{port}.service {active} {enabled} {cwd} {start}")
    return "\n".join(lines)


def test_instances_quiet_when_running_current_release(plan, tmp_path):
    cur = "/opt/Rocket.Chat/8.2.0"
    ctx = ctx_for(plan, tmp_path, {"rc_instances": instances_fact(
        {3001: ("active", "enabled", cur, 2000), 3002: ("active", "enabled", cur, 2001)})})
    assert isinstance(rocketchat.Instances().check(ctx), NoChange)


def test_instances_restart_after_upgrade_config_change_and_remove_extra(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path, {"rc_instances": instances_fact({
        3001: ("active", "enabled", "/opt/Rocket.Chat/8.1.0", 2000),     # old release
        3002: ("active", "enabled", "/opt/Rocket.Chat/8.2.0", 900),      # config newer
        3003: ("active", "enabled", "/opt/Rocket.Chat/8.2.0", 2000),     # not planned
    })})
    out = rocketchat.Instances().check(ctx)
    assert isinstance(out, Change)
    assert out.data == {"restart": [3001, 3002], "enable": [], "extra": [3003]}
    assert "3001 runs 8.1.0" in out.summary and "3002 config changed" in out.summary


async def test_instances_apply_is_rolling_and_waits_for_health(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path)
    change = Change("x", [], data={"restart": [3001, 3002], "enable": [3001, 3002], "extra": [3003]})
    await rocketchat.Instances().apply(ctx, change)
    script = ctx.ran[0]
    order = [line.strip() for line in script.splitlines()
             if line.startswith(("systemctl restart", "wait_health 3", "systemctl disable"))]
    assert order == ["systemctl restart rocketchat@3001.service", "wait_health 3001",
                     "systemctl restart rocketchat@3002.service", "wait_health 3002",
                     "systemctl disable --now --quiet rocketchat@3003.service || true"]
    assert "http://127.0.0.1:$port/livez" in script


def test_health_path_by_version():
    assert rocketchat.health_path("8.2.0") == "/livez"
    assert rocketchat.health_path("7.11.0") == "/livez"
    assert rocketchat.health_path("7.10.3") == "/health"


def test_user_node_deno_bundle_current_checks(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path, {
        "rc_user": "rocketchat:x:998:998::/opt/Rocket.Chat:/usr/sbin/nologin\n\n!",
        "rc_node": "v22.22.3", "rc_deno": "deno 2.6.10 (stable, release, x86_64-unknown-linux-gnu)",
        "rc_bundle": "installed 8.2.0 from http://m/rocketchat/8.2.0/download 2026-12-03T00:00:00Z",
        "rc_links": "8.2.0\n8.1.0"})
    for step in (rocketchat.User(), rocketchat.Node(), rocketchat.Deno(), rocketchat.Bundle(),
                 rocketchat.Current()):
        assert isinstance(step.check(ctx), NoChange), step.id
    ctx.facts.update(rc_node="v20.1.0", rc_links="8.1.0\n8.0.0", rc_bundle="", rc_user="")
    node = rocketchat.Node().check(ctx)
    assert "sha256sum -c" in node.ops[0].script
    assert "/v22.22.3/node-v22.22.3-linux-x64.tar.gz" in node.ops[0].script
    cur = rocketchat.Current().check(ctx)
    assert cur.summary == "switch current to 8.1.0 -> 8.2.0 (rollback: /opt/Rocket.Chat/previous)"
    assert "npm install --production" in rocketchat.Bundle().check(ctx).ops[0].script
    assert "useradd --system" in rocketchat.User().check(ctx).ops[0].script


def test_deno_skipped_for_old_release(plan, tmp_path, monkeypatch):
    from dataclasses import replace
    monkeypatch.setattr(rocketchat, "release_for", lambda p: replace(RELEASE, deno=None))
    assert isinstance(rocketchat.Deno().check(ctx_for(plan, tmp_path)), Skip)


# ---------------------------------------------------------------- nginx
def test_site_has_the_issue_list(plan):
    site = nginx.render_site(plan, inventory())
    for needle in ("ip_hash;", "server 127.0.0.1:3001 max_fails=3", "server 127.0.0.1:3002",
                   "proxy_pass http://rocketchat;", "proxy_set_header Upgrade $http_upgrade;",
                   "proxy_set_header Connection $connection_upgrade;",
                   "X-Forwarded-For $proxy_add_x_forwarded_for", "X-Forwarded-Proto $scheme",
                   "return 301 https://$host$request_uri;", "ssl_protocols TLSv1.2 TLSv1.3;",
                   "Strict-Transport-Security", "No OCSP stapling"):
        assert needle in site, needle
    assert "TLSv1.1" not in site and "https://rocketchat" not in site
    assert "ssl_stapling on;" in nginx.render_site(plan, inventory(), "http://ocsp.example/")


@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("openssl"), reason="needs nginx and openssl")
@pytest.mark.parametrize("ocsp", ["", "http://ocsp.example/"])
def test_rendered_site_passes_nginx_t(plan, tmp_path, ocsp):
    live = tmp_path / "live"
    live.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=chat.lab.test", "-keyout", live / "privkey.pem",
                    "-out", live / "fullchain.pem"], check=True, capture_output=True)
    shutil.copy(live / "fullchain.pem", live / "chain.pem")
    site = nginx.render_site(plan, inventory(), ocsp)
    site = site.replace("/etc/letsencrypt/live/chat.lab.test", str(live))
    site = site.replace(nginx.DHPARAM, str(nginx.TEMPLATES / "ffdhe2048.pem"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(textwrap.dedent(f"""
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{}}
        http {{
            access_log off;
            client_body_temp_path {tmp_path};
            proxy_temp_path {tmp_path};
            fastcgi_temp_path {tmp_path};
            uwsgi_temp_path {tmp_path};
            scgi_temp_path {tmp_path};
            include {tmp_path}/site.conf;
        }}
    """))
    r = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


def test_site_step_quiet_when_in_place(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path, {"web_ocsp": ""})
    site = nginx.render_site(plan, ctx.inventory)
    dh = (nginx.TEMPLATES / "ffdhe2048.pem").read_text()
    ctx.facts["web_site"] = (f"{nginx._sha(site)}  {nginx.SITE}\n{nginx._sha(dh)}  {nginx.DHPARAM}\n"
                             f"enabled {nginx.SITE}\nothers\nnginx active")
    assert isinstance(nginx.Site().check(ctx), NoChange)
    ctx.facts["web_site"] = ctx.facts["web_site"].replace("nginx active", "nginx inactive")
    out = nginx.Site().check(ctx)
    script = "\n".join(getattr(op, "script", "") for op in out.ops)
    assert "nginx -t" in script and "systemctl reload nginx" in script
    assert "systemctl restart nginx" not in script
    assert script.index("nginx -t") < script.index("systemctl reload nginx")


def test_web_steps_only_on_first_web_host(tmp_path):
    plan = make_plan(tmp_path, app_hosts=2)
    assert nginx.Site().applies(ctx_for(plan, tmp_path, web=2, host="web1"))
    assert not nginx.Site().applies(ctx_for(plan, tmp_path, web=2, host="web2"))


# ---------------------------------------------------------------- tls
def test_certbot_command_uses_acme_server_and_ca_bundle(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    plan = make_plan(tmp_path, acme_server="https://198.18.64.1:14000/dir", acme_ca_bundle=ca)
    ctx = ctx_for(plan, tmp_path, {"tls_cert": "", "tls_ca_bundle": ""})
    out = tls.Certificate().check(ctx)
    cmd = out.ops[-1].script
    assert cmd.startswith("mkdir -p /var/www/letsencrypt && REQUESTS_CA_BUNDLE=/etc/rocket-wizard/acme-ca.pem certbot certonly --webroot")
    assert "--server https://198.18.64.1:14000/dir" in cmd and "-d chat.lab.test" in cmd
    assert isinstance(out.ops[0], Put) and out.ops[0].path == tls.CA_BUNDLE_PATH
    import hashlib
    ctx.facts.update(tls_cert="X509v3 Subject Alternative Name: \n    DNS:chat.lab.test\nnotAfter=...\n"
                              "server = https://198.18.64.1:14000/dir",
                     tls_ca_bundle=hashlib.sha256(ca.read_bytes()).hexdigest())
    assert isinstance(tls.Certificate().check(ctx), NoChange)


def test_certbot_defaults_to_lets_encrypt(plan, tmp_path):
    out = tls.Certificate().check(ctx_for(plan, tmp_path, {"tls_cert": ""}))
    assert "--server https://acme-v02.api.letsencrypt.org/directory" in out.ops[-1].script
    assert "REQUESTS_CA_BUNDLE" not in out.ops[-1].script


def test_renewal_hook_and_timer(plan, tmp_path):
    ctx = ctx_for(plan, tmp_path, {"tls_renewal": "disabled\ninactive"})
    out = tls.Renewal().check(ctx)
    assert [op.path for op in out.ops if isinstance(op, Put)] == [tls.DEPLOY_HOOK]
    assert "nginx -t -q && systemctl reload nginx" in tls.DEPLOY_HOOK_SCRIPT
    import hashlib
    ctx.facts["tls_renewal"] = (f"enabled\nactive\n{hashlib.sha256(tls.DEPLOY_HOOK_SCRIPT.encode()).hexdigest()}"
                                f"  {tls.DEPLOY_HOOK}\n755")
    assert isinstance(tls.Renewal().check(ctx), NoChange)


def test_dns_offer_and_messages():
    offer = tls.dns_offer("chat.example.com", "203.0.113.5", ["example.org", "example.com"])
    assert (offer.zone, offer.record) == ("example.com", "chat")
    assert tls.dns_offer("example.com", "x", ["example.com"]).record == "@"
    assert tls.dns_offer("chat.other.net", "x", ["example.com"]).zone is None
    assert "does not resolve" in tls.dns_problem("chat.example.com", "203.0.113.5", [])
    assert "not to this web host's public address 203.0.113.5" in tls.dns_problem(
        "chat.example.com", "203.0.113.5", ["198.51.100.1"])


def test_resolve_a_against_a_local_dns_server():
    """Our tiny resolver against a tiny DNS server on loopback (no public DNS)."""
    import socket
    import struct
    import threading

    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def answer():
        msg, addr = srv.recvfrom(512)
        qid = msg[:2]
        question = msg[12:]
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("198.18.64.21")
        srv.sendto(qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + ans, addr)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        assert tls.resolve_a("chat.lab.test", f"127.0.0.1:{port}") == ["198.18.64.21"]
    finally:
        t.join(2)
        srv.close()


def test_dns_step_stops_the_run_with_a_clear_reason(plan, tmp_path, monkeypatch):
    monkeypatch.setattr(tls, "resolve_a", lambda name: ["198.51.100.7"])
    with pytest.raises(StepError, match="resolves to 198.51.100.7, not to this web host's public address 198.18.64.21"):
        tls.DomainPoints().check(ctx_for(plan, tmp_path))
    monkeypatch.setattr(tls, "resolve_a", lambda name: ["198.18.64.21"])
    assert isinstance(tls.DomainPoints().check(ctx_for(plan, tmp_path)), NoChange)
