"""The hardening phase on real lab hosts (Debian 12, systemd, sshd, ufw, fail2ban).

Molecule's way: converge twice, the second run must change nothing; then verify by
reading the hosts, with outside graders (ssh-audit from this machine, lynis inside a
host), real connections (MongoDB's port from a peer and from a non-peer, root over
SSH), a hand-made change put back, and a reboot.

Needs root; run with -s to see the figures (also written to $RW_REPORT_DIR/hardening.txt).
Tests share one cluster and run in file order; each uses its own host for SSH so
ufw's `limit` (6 new connections per 30 s per address) never bites.
"""

from __future__ import annotations

import re
import time

import pytest

from labcluster import OUTSIDER, PLANNED, report, run, ssh_argv

pytestmark = pytest.mark.lab

MACHINE_WIDE = {"harden.swap", "harden.thp"}


def _finished(events):
    from wizard.events import StepFinished

    return [e for e in events if isinstance(e, StepFinished)]


def test_converges_then_changes_nothing(hardened):
    c, (r1, e1), (r2, e2) = hardened
    rt1 = sum(r1.round_trips.values())
    rt2 = sum(r2.round_trips.values())
    report(f"first run: {r1.elapsed:.1f} s, {r1.changed} changes, {rt1} round trips "
           f"({', '.join(f'{h} {n}' for h, n in sorted(r1.round_trips.items()))})")
    report(f"rerun: {r2.elapsed:.2f} s, {r2.changed} changes, {rt2} round trips "
           f"({', '.join(f'{h} {n}' for h, n in sorted(r2.round_trips.items()))})")
    assert r1.ok, r1.failures
    assert r1.changed > 0
    assert r2.ok, r2.failures
    assert r2.changed == 0, r2.changes                       # the idempotence check
    assert set(r2.round_trips) == set(PLANNED)
    assert all(n <= 2 for n in r2.round_trips.values()), r2.round_trips
    for e in _finished(e2):
        if e.step in MACHINE_WIDE:
            assert e.status == "skipped" and "machine-wide" in e.reason and "would" in e.reason
        else:
            assert e.status == "ok", (e.host, e.step, e.reason)
    # The outsider was never touched.
    assert OUTSIDER not in r1.round_trips


def test_the_wizard_now_logs_in_as_the_sudo_user(hardened):
    c = hardened[0]
    for name in PLANNED:
        assert c.store.state.hosts[name].ssh_user == c.plan.sudo_user
        p = c.exec(name, f"getent shadow {c.plan.sudo_user} | cut -d: -f2; cat /etc/hostname; hostname -f")
        shadow, hostname, fqdn = p.stdout.split()
        assert shadow in ("*", "!") and hostname == name and fqdn == c.plan.fqdn(name)


def test_ssh_audit_reports_no_failure(hardened):
    c = hardened[0]
    ip = c.store.state.hosts["web1"].public_ip
    p = run(["ssh-audit", "-n", "-t", "10", ip], timeout=60)
    out = p.stdout
    fails = [ln for ln in out.splitlines() if "[fail]" in ln]
    warns = [ln.strip() for ln in out.splitlines() if "[warn]" in ln]
    report(f"ssh-audit (web1): {len(fails)} failures, {len(warns)} warnings"
           + (": " + "; ".join(re.sub(r"\s+", " ", w) for w in warns) if warns else ""))
    assert "(gen) banner: SSH-2.0-OpenSSH" in out, out[-2000:]
    assert not fails, "\n".join(fails)


def test_root_and_passwords_are_refused(hardened):
    c = hardened[0]
    root = run(ssh_argv(c, "mongo3", "root", "true"))
    assert root.returncode == 255 and "Permission denied" in root.stderr, root.stderr
    pw = run(ssh_argv(c, "mongo3", c.plan.sudo_user, "true", options=(
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive")))
    # The server offers public keys only.
    assert pw.returncode == 255 and "Permission denied (publickey)" in pw.stderr, pw.stderr
    ok = run(ssh_argv(c, "mongo3", c.plan.sudo_user, "sudo", "-n", "true"))
    # The refused logins above count toward fail2ban's maxretry against this machine's
    # address: lift any ban so the tests after this one reach mongo3 as the wizard would.
    c.exec("mongo3", "fail2ban-client unban --all >/dev/null 2>&1 || true")
    assert ok.returncode == 0, ok.stderr
    report("root over SSH: refused; password login: not offered; sudo user with key: sudo -n works")


def test_mongodb_port_open_to_peers_only(hardened):
    c = hardened[0]
    target = c.store.state.hosts["mongo1"]
    me = target.private_ip
    # A stand-in listener bound to the private address, as mongod will be.
    pid = c.exec("mongo1", f"setsid python3 -m http.server 27017 --bind {me} >/dev/null 2>&1 < /dev/null & echo $!").stdout.strip()
    try:
        for _ in range(50):
            if f"{me}:27017" in c.exec("mongo1", "ss -ltnH").stdout:
                break
            time.sleep(0.1)
        probe = f"timeout 4 bash -c 'exec 3<>/dev/tcp/{me}/27017' && echo open || echo closed"
        seen = {h: c.exec(h, probe, timeout=20).stdout.strip() for h in ("mongo2", "mongo3", "web1", OUTSIDER)}
        public = c.exec("mongo2", f"timeout 4 bash -c 'exec 3<>/dev/tcp/{target.public_ip}/27017' && echo open || echo closed").stdout.strip()
    finally:
        c.exec("mongo1", f"kill {pid} 2>/dev/null || true")
    report(f"MongoDB port on mongo1: {', '.join(f'{h} {v}' for h, v in seen.items())}; via public address: {public}")
    assert seen == {"mongo2": "open", "mongo3": "open", "web1": "open", OUTSIDER: "closed"}
    assert public == "closed"


def test_lynis_hardening_index(hardened):
    c = hardened[0]
    p = c.exec("web1", "DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends lynis "
                       ">/dev/null 2>&1; lynis audit system --quick --no-colors 2>&1", timeout=900)
    m = re.search(r"Hardening index : (\d+)", p.stdout)
    assert m, p.stdout[-3000:]
    index = int(m.group(1))
    sugg = c.exec("web1", "grep -c '^suggestion' /var/log/lynis-report.dat").stdout.strip()
    report(f"lynis hardening index (web1, in a container): {index} (target 75), {sugg} suggestions")
    # A container: lynis cannot credit kernel-wide settings (kernel sysctls, swap, THP)
    # that the steps skip here; a VM would score higher, not lower.
    assert index >= 75


def test_a_hand_made_change_is_put_back(hardened):
    c = hardened[0]
    c.exec("mongo1", "ufw allow 27017/tcp >/dev/null; "
                     "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' /etc/ssh/sshd_config.d/00-rocket-wizard.conf; "
                     "echo Etc/UTC > /etc/timezone; sed -i '/web1.chat.lab.test/d' /etc/hosts; systemctl stop fail2ban")
    res, events = c.run_phase()
    changed = sorted((e.host, e.step) for e in _finished(events) if e.status == "changed")
    assert res.ok, res.failures
    assert changed == [("mongo1", s) for s in
                       ("harden.fail2ban", "harden.hosts", "harden.sshd", "harden.timezone", "harden.ufw")]
    assert "27017/tcp " not in c.exec("mongo1", "ufw status").stdout.replace(f"{c.store.state.hosts['mongo1'].private_ip} 27017/tcp", "")
    again, _ = c.run_phase()
    assert again.ok and again.changed == 0, again.changes
    report(f"hand-made changes on mongo1 put back: {', '.join(s for _, s in changed)}; next run: 0 changes")


def _boots(c, name: str) -> int:
    return next(h["boots"] or 0 for h in c.lab.status()["hosts"] if h["name"] == name)


def reboot(c, name: str, timeout: float = 180) -> None:
    """`systemctl reboot` inside the host, then wait for its systemd, not for port 22.

    Lab.reboot_host() waits by polling port 22 ten times a second; ufw's `limit` on SSH
    (6 new connections per 30 s per address) rejects that poll from the 7th try on and
    keeps rejecting while it goes on, so the wait never ends on a hardened host.
    """
    before = _boots(c, name)
    c.lab.exec(name, ["systemctl", "reboot"], timeout=30)
    deadline = time.monotonic() + timeout
    while _boots(c, name) <= before or not c.lab.host(name).running:
        assert time.monotonic() < deadline, f"{name} did not come back from the reboot"
        time.sleep(0.5)
    while True:
        state = c.exec(name, "systemctl is-system-running --wait 2>/dev/null", timeout=120).stdout.strip()
        if state in ("running", "degraded"):
            return
        assert time.monotonic() < deadline, f"{name}: systemd says {state!r} after the reboot"
        time.sleep(0.5)


def test_a_reboot_keeps_everything(hardened):
    c = hardened[0]
    t0 = time.monotonic()
    reboot(c, "mongo2")
    nologin = c.exec("mongo2", "systemctl is-failed systemd-user-sessions.service").stdout.strip()
    if nologin == "failed":
        # A lab artifact (lab.md: units failing with a cgroup error inside nspawn), not the
        # recipe's doing: a droplet removes /run/nologin at the end of every boot.
        report("lab: systemd-user-sessions failed after the reboot (cgroup error); started it again")
        c.exec("mongo2", "systemctl start systemd-user-sessions.service || rm -f /run/nologin")
    ufw = c.exec("mongo2", "ufw status").stdout
    f2b = c.exec("mongo2", "systemctl is-active fail2ban; fail2ban-client status sshd >/dev/null && echo jail").stdout.split()
    name = c.exec("mongo2", "hostname").stdout.strip()
    login = run(ssh_argv(c, "mongo2", c.plan.sudo_user, "sudo", "-n", "true"))
    report(f"reboot of mongo2 ({time.monotonic() - t0:.1f} s): ufw {'active' if 'Status: active' in ufw else 'INACTIVE'}, "
           f"fail2ban {' '.join(f2b)}, hostname {name}, sudo user login rc {login.returncode}")
    assert "Status: active" in ufw
    assert f2b == ["active", "jail"]
    assert name == "mongo2"
    assert login.returncode == 0, login.stderr
    res, _ = c.run_phase()
    assert res.ok and res.changed == 0, res.changes
