"""Recorded-facts cases: which facts go in, what a step must decide.

Each case names a recorded facts file (data/facts/, from a Debian 12 lab host or, for
Ubuntu 24.04, written from a fresh droplet's known state), the few facts it changes,
the host and plan, and the expected outcome and ops, which live in
data/cases/<id>.json (pyinfra-style: data, cheap to add, no SSH).

    python3 tests/hardening/cases.py     # (re)write data/cases/*.json from the steps

Regenerating is for an intended change of a step: review the diff of the JSON
before committing it, it is the specification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECORDED_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJ3LXRlc3QtcmVjb3JkZWQtb3BlcmF0b3Ita2V5MDA operator@recorded"

VM = {"_container": "none"}
# A 2 GB droplet (MemTotal as the kernel reports it), THP as Debian/Ubuntu kernels ship it.
VM_2GB = {**VM, "mem_kib": "2014764", "swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority",
          "swapfile_bytes": "", "fstab_swap": "", "swappiness": "60", "swappiness_conf": ""}
VM_2GB_SWAP_DONE = {**VM_2GB,
                    "swaps": "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t2097148\t\t0\t\t-2",
                    "swapfile_bytes": "2147483648", "fstab_swap": "/swapfile none swap sw 0 0",
                    "swappiness": "10", "swappiness_conf": "vm.swappiness = 10"}
THP_DONE_80 = {**VM, "thp_enabled": "[always] madvise never",
               "thp_defrag": "always defer [defer+madvise] madvise never", "thp_max_ptes_none": "0",
               "thp_unit_enabled": "enabled"}


@dataclass
class Case:
    id: str
    step: str
    facts: str
    host: str = "mongo1"
    override: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    ssh_user: str | None = None
    why: str = ""


CASES = [
    # ---- packages
    Case("packages-debian-fresh", "harden.packages", "debian12-fresh",
         why="never updated: refresh, upgrade, install what the phase needs"),
    Case("packages-ubuntu-fresh", "harden.packages", "ubuntu2404-fresh",
         why="Ubuntu ships ufw and unattended-upgrades: only fail2ban and apt-listchanges are missing"),
    Case("packages-fresh-lists-with-upgrades", "harden.packages", "debian12-mongo1-hardened",
         override={"apt_age": "600", "apt_upgradable": "3"},
         why="lists are fresh: upgrade without refetching them"),
    Case("packages-stale-lists", "harden.packages", "debian12-mongo1-hardened",
         override={"apt_age": "90000"}, why="lists a day old: refresh and upgrade"),
    Case("packages-interrupted-dpkg", "harden.packages", "debian12-mongo1-hardened",
         override={"apt_age": "600", "dpkg_audit": "The following packages are only half configured"},
         why="a Ctrl-C during dpkg: finish it"),
    Case("packages-hardened", "harden.packages", "debian12-mongo1-hardened",
         override={"apt_age": "600"}, why="nothing to do"),
    # ---- hostname, /etc/hosts
    Case("hostname-debian-fresh", "harden.hostname", "debian12-fresh"),
    Case("hostname-ubuntu-fresh", "harden.hostname", "ubuntu2404-fresh", host="web1"),
    Case("hostname-hardened", "harden.hostname", "debian12-mongo1-hardened"),
    Case("hostname-no-cloud-init", "harden.hostname", "debian12-fresh", override={"cloud_dir": "no"},
         why="no cloud-init: no drop-in for it"),
    Case("hosts-debian-fresh", "harden.hosts", "debian12-fresh"),
    Case("hosts-ubuntu-fresh", "harden.hosts", "ubuntu2404-fresh",
         why="cloud-init's header and IPv6 lines stay, the 127.0.1.1 line goes"),
    Case("hosts-hardened", "harden.hosts", "debian12-mongo1-hardened"),
    Case("hosts-stale-entry", "harden.hosts", "debian12-mongo1-hardened",
         override={"etc_hosts": "127.0.0.1\tlocalhost\n10.9.9.9 mongo2.chat.lab.test mongo2\n192.0.2.7 backup"},
         why="a hand-made line naming a host of ours is dropped; an unrelated one stays"),
    # ---- locale, timezone
    Case("locale-debian-fresh", "harden.locale", "debian12-fresh",
         why="Debian: list the locale in /etc/locale.gen, then locale-gen"),
    Case("locale-ubuntu-fresh", "harden.locale", "ubuntu2404-fresh", why="Ubuntu: locale-gen takes the locale"),
    Case("locale-hardened", "harden.locale", "debian12-mongo1-hardened"),
    Case("timezone-debian-fresh", "harden.timezone", "debian12-fresh",
         why="the link already resolves to UTC; only /etc/timezone says Etc/UTC"),
    Case("timezone-ubuntu-fresh", "harden.timezone", "ubuntu2404-fresh",
         why="zoneinfo/UTC is a different file than the link's target: relink"),
    Case("timezone-plan-berlin", "harden.timezone", "debian12-mongo1-hardened", plan={"timezone": "Europe/Berlin"},
         override={"tz_target": "/usr/share/zoneinfo/Europe/Berlin"}),
    Case("timezone-hardened", "harden.timezone", "debian12-mongo1-hardened"),
    # ---- swap (machine-wide)
    Case("swap-container-skip", "harden.swap", "debian12-fresh", why="the lab: skip, say what a VM would get"),
    Case("swap-vm-ubuntu-fresh", "harden.swap", "ubuntu2404-fresh", override=VM_2GB),
    Case("swap-vm-debian-fresh", "harden.swap", "debian12-fresh", override=VM_2GB),
    Case("swap-vm-done", "harden.swap", "debian12-mongo1-hardened", override=VM_2GB_SWAP_DONE),
    Case("swap-vm-off-by-hand", "harden.swap", "debian12-mongo1-hardened",
         override={**VM_2GB_SWAP_DONE, "swaps": VM_2GB["swaps"]}, why="swapoff by hand: turn it on again"),
    Case("swap-vm-memory-grew", "harden.swap", "debian12-mongo1-hardened",
         override={**VM_2GB_SWAP_DONE, "mem_kib": "4020000"}, why="resized droplet: a 4 GiB file"),
    # ---- THP (machine-wide)
    Case("thp-container-skip", "harden.thp", "debian12-fresh"),
    Case("thp-vm-mongo80", "harden.thp", "ubuntu2404-fresh", override=VM),
    Case("thp-vm-mongo70", "harden.thp", "debian12-fresh", override=VM,
         plan={"rocketchat_version": "7.10.0", "mongodb_version": "7.0"}, why="MongoDB 7.0: THP off"),
    Case("thp-vm-done-80", "harden.thp", "debian12-mongo1-hardened", override=THP_DONE_80, why="unit file is filled in by the test"),
    # ---- unattended upgrades
    Case("unattended-debian-fresh", "harden.unattended", "debian12-fresh"),
    Case("unattended-ubuntu-fresh", "harden.unattended", "ubuntu2404-fresh",
         why="Ubuntu's own 20auto-upgrades lacks the autoclean line; the security origin is Ubuntu's"),
    Case("unattended-hardened", "harden.unattended", "debian12-mongo1-hardened"),
    # ---- baseline for the graders
    Case("baseline-debian-fresh", "harden.baseline", "debian12-fresh"),
    Case("baseline-ubuntu-fresh", "harden.baseline", "ubuntu2404-fresh",
         why="Ubuntu's loose rp_filter (2) becomes strict; sysstat not installed yet: left alone"),
    Case("baseline-sysstat-off", "harden.baseline", "debian12-fresh", override={"sysstat_enabled": 'ENABLED="false"'}),
    Case("baseline-hardened", "harden.baseline", "debian12-mongo1-hardened"),
    Case("baseline-sysctl-reset", "harden.baseline", "debian12-mongo1-hardened",
         override={"baseline_sysctl": "net.ipv4.conf.all.rp_filter = 0"}, why="a sysctl flipped at run time: apply the file again"),
    # ---- the sudo user and the login switch
    Case("sudo-user-fresh", "harden.sudo_user", "debian12-fresh"),
    Case("sudo-user-hardened", "harden.sudo_user", "debian12-mongo1-hardened"),
    Case("sudo-user-password-set-by-hand", "harden.sudo_user", "debian12-mongo1-hardened",
         override={"user_shadow": "$y$j9T$abc$def"}),
    Case("sudo-user-key-removed", "harden.sudo_user", "debian12-mongo1-hardened",
         override={"user_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOfTheOperator other@laptop"},
         why="add our key, keep the one the operator added"),
    Case("sudo-user-sudoers-edited", "harden.sudo_user", "debian12-mongo1-hardened",
         override={"sudoers": "rocket ALL=(ALL:ALL) ALL"}),
    Case("login-as-root", "harden.login", "debian12-fresh"),
    Case("login-nologin", "harden.login", "debian12-fresh", override={"nologin": "present", "user_sessions": "failed"},
         why="systemd-user-sessions failed at boot: /run/nologin refuses the sudo user"),
    Case("login-done", "harden.login", "debian12-mongo1-hardened", ssh_user="rocket"),
    # ---- sshd
    Case("sshd-debian-fresh", "harden.sshd", "debian12-fresh", ssh_user="rocket"),
    Case("sshd-ubuntu-fresh", "harden.sshd", "ubuntu2404-fresh", ssh_user="rocket"),
    Case("sshd-hardened", "harden.sshd", "debian12-mongo1-hardened", ssh_user="rocket"),
    Case("sshd-overridden-by-earlier-file", "harden.sshd", "debian12-mongo1-hardened", ssh_user="rocket",
         override={"sshd_effective": "permitrootlogin no\npubkeyauthentication yes\npasswordauthentication yes\nkbdinteractiveauthentication no"}),
    Case("sshd-include-removed", "harden.sshd", "debian12-mongo1-hardened", ssh_user="rocket",
         override={"sshd_include": "0", "sshd_effective": "permitrootlogin yes\npubkeyauthentication yes\npasswordauthentication yes\nkbdinteractiveauthentication no"}),
    # ---- ufw
    Case("ufw-debian-fresh-mongo", "harden.ufw", "debian12-fresh", override={"ip_addrs": (
        "2: eth0    inet 198.18.80.10/24 scope global eth0\n3: eth1    inet 198.18.81.10/24 scope global eth1")}),
    Case("ufw-ubuntu-fresh-web", "harden.ufw", "ubuntu2404-fresh", host="web1"),
    Case("ufw-hardened-mongo", "harden.ufw", "debian12-mongo1-hardened"),
    Case("ufw-hardened-web", "harden.ufw", "debian12-web1-hardened", host="web1"),
    Case("ufw-disabled-by-hand", "harden.ufw", "debian12-mongo1-hardened",
         override={"ufw_loaded": "no", "ufw_conf": "ENABLED=no\nIPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\""}),
    Case("ufw-runbook-rule-added-by-hand", "harden.ufw", "debian12-mongo1-hardened",
         why="the runbook's 'allow in on eth1 to any port 27017' opens MongoDB to the whole private network",
         override={"ufw_tuples": None}),
    Case("ufw-no-private-interface", "harden.ufw", "debian12-mongo1-hardened",
         override={"ip_addrs": "2: eth0    inet 198.18.80.10/24 scope global eth0"}),
    # ---- fail2ban
    Case("fail2ban-debian-fresh", "harden.fail2ban", "debian12-fresh"),
    Case("fail2ban-failed-after-install", "harden.fail2ban", "debian12-fresh",
         override={"f2b_state": "enabled\nfailed"}, why="Debian's default jail fails without auth.log"),
    Case("fail2ban-hardened", "harden.fail2ban", "debian12-mongo1-hardened"),
]


def op_to_json(op) -> dict:
    from wizard.ops import Put
    if isinstance(op, Put):
        return {"put": op.path, "mode": f"{op.mode:o}", "owner": f"{op.owner}:{op.group}",
                "content": op.data.decode()}
    return {"cmd": op.script}


def run_case(case: Case, tmp, plan_factory) -> dict:
    """The step's decision on the case's facts, as JSON-able data."""
    from hardening_facts import load_facts, make_ctx, recorded_hosts
    from recipes import hardening
    from wizard.engine import Change, NoChange, Skip, StepError

    facts = load_facts(case.facts)
    override = dict(case.override)
    if case.id == "ufw-runbook-rule-added-by-hand":
        override["ufw_tuples"] = facts["ufw_tuples"] + "\n### tuple ### allow tcp 27017 0.0.0.0/0 any 0.0.0.0/0 in_eth1"
    facts.update(override)
    plan = plan_factory(**case.plan)
    step = next(s for s in hardening.PHASE.steps if s.id == case.step)
    hosts = recorded_hosts(case.facts)
    if case.id == "thp-vm-done-80":
        ctx0 = make_ctx(plan, case.host, facts, tmp, hosts=hosts)
        facts["thp_unit"] = step.unit(ctx0)
    ctx = make_ctx(plan, case.host, facts, tmp, in_container=facts.get("_container", "none") != "none",
                   ssh_user=case.ssh_user, hosts=hosts)
    try:
        out = step.check(ctx)
    except StepError as e:
        return {"outcome": "error", "reason": str(e)}
    if isinstance(out, Change):
        return {"outcome": "change", "summary": out.summary, "ops": [op_to_json(o) for o in out.ops]}
    if isinstance(out, Skip):
        return {"outcome": "skip", "reason": out.reason}
    assert isinstance(out, NoChange)
    return {"outcome": "nochange", "reason": out.reason}


def _main() -> None:
    import json
    import sys
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    sys.path.insert(0, str(here.parents[1]))
    from wizard.plan import Plan

    with tempfile.TemporaryDirectory() as d:
        key = Path(d) / "id_ed25519"
        key.write_text("unused\n")
        key.with_name("id_ed25519.pub").write_text(RECORDED_KEY + "\n")

        def plan_factory(**over):
            base = dict(name="rh-test", provider="lab", domain="chat.lab.test", admin_email="ops@lab.test",
                        ssh_key=str(key), image="debian-12-x64")
            base.update(over)
            return Plan.model_validate(base)

        out_dir = here / "data" / "cases"
        out_dir.mkdir(parents=True, exist_ok=True)
        for c in CASES:
            result = run_case(c, Path(d), plan_factory)
            doc = {"id": c.id, "step": c.step, "facts": c.facts, "host": c.host, "plan": c.plan,
                   "ssh_user": c.ssh_user, "why": c.why, "expect": result}
            (out_dir / f"{c.id}.json").write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{c.id:40} {result['outcome']}")


if __name__ == "__main__":
    _main()
