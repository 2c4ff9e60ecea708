"""The hardening recipe's pure parts and its safety rules, without SSH."""

from __future__ import annotations

import asyncio

import pytest

from hardening_facts import load_facts, make_ctx
from recipes import hardening
from wizard.engine import Change, Skip, StepError


def test_phase_order_keeps_the_operator_in():
    ids = [s.id for s in hardening.PHASE.steps]
    # packages first (later steps configure what it installs); the login switch
    # before sshd turns root off; ufw after sshd.
    assert ids[0] == "harden.packages"
    assert ids.index("harden.sudo_user") < ids.index("harden.login") < ids.index("harden.sshd") < ids.index("harden.ufw")
    assert hardening.PHASE.segments() == [hardening.PHASE.steps]     # all per host: hosts run in parallel


def test_fact_names_do_not_clash(recorded_plan, tmp_path):
    ctx = make_ctx(recorded_plan(), "mongo1", {}, tmp_path)
    seen: dict[str, str] = {}
    for s in hardening.PHASE.steps:
        for k, v in s.fact_commands(ctx).items():
            assert seen.setdefault(k, v) == v, f"fact {k} defined twice differently"


@pytest.mark.parametrize("mem_kib,mib", [(1015000, 1024), (2014764, 2048), (4020000, 4096), (8150000, 4096), (480000, 1024)])
def test_swap_is_sized_to_memory(mem_kib, mib):
    assert hardening.swap_size_mib(mem_kib) == mib


@pytest.mark.parametrize("version,enabled,defrag", [("7.0", "never", "never"), ("8.0", "always", "defer+madvise")])
def test_thp_follows_the_mongodb_series(version, enabled, defrag):
    want = hardening.thp_settings(version)
    assert (want["enabled"], want["defrag"]) == (enabled, defrag)
    assert ("khugepaged/max_ptes_none" in want) == (version == "8.0")


def test_hosts_file_is_a_fixed_point():
    entries = [("198.18.81.10", "mongo1.chat.lab.test", "mongo1"), ("198.18.81.13", "web1.chat.lab.test", "web1")]
    for start in (load_facts("debian12-fresh")["etc_hosts"], load_facts("ubuntu2404-fresh")["etc_hosts"], ""):
        once = hardening.hosts_file(start, entries)
        assert hardening.hosts_file(once, entries) == once
        assert "127.0.0.1" in once and "127.0.1.1" not in once
        assert "198.18.81.13\tweb1.chat.lab.test web1" in once


def test_hosts_file_follows_a_changed_address():
    old = hardening.hosts_file("127.0.0.1 localhost\n", [("198.18.81.10", "mongo1.x.test", "mongo1")])
    new = hardening.hosts_file(old, [("198.18.81.20", "mongo1.x.test", "mongo1")])
    assert "198.18.81.10" not in new and "198.18.81.20\tmongo1.x.test mongo1" in new


def test_template_refuses_a_missing_value():
    with pytest.raises(ValueError, match="sudo_user"):
        hardening.template("hardening_sshd.conf")


def test_sshd_template_is_key_only_and_modern(recorded_plan, tmp_path):
    text = hardening.Sshd().wanted(make_ctx(recorded_plan(), "mongo1", {}, tmp_path))
    conf = {ln.split()[0]: ln.split(None, 1)[1] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")}
    assert conf["PermitRootLogin"] == "no" and conf["PasswordAuthentication"] == "no"
    assert conf["KbdInteractiveAuthentication"] == "no"
    for weak in ("nistp", "sha1", "cbc", "umac-64", "chacha20"):
        for key in ("KexAlgorithms", "Ciphers", "MACs", "HostKeyAlgorithms"):
            assert weak not in conf[key], (key, weak)


def test_sshd_apply_refuses_before_the_login_switch(recorded_plan, tmp_path):
    """The lock-out guard: even handed a change, sshd must not go key-only-no-root as root."""
    ctx = make_ctx(recorded_plan(), "mongo1", load_facts("debian12-fresh"), tmp_path)   # ssh_user root
    change = hardening.Sshd().check(ctx)
    assert isinstance(change, Change)
    with pytest.raises(StepError, match="has not been verified"):
        asyncio.run(hardening.Sshd().apply(ctx, change))


@pytest.mark.parametrize("step", [hardening.Swap(), hardening.TransparentHugePages()], ids=["swap", "thp"])
def test_machine_wide_steps_skip_in_a_container_and_say_what_a_vm_gets(step, recorded_plan, tmp_path):
    facts = {**load_facts("debian12-fresh"), "mem_kib": "2014764"}
    ctx = make_ctx(recorded_plan(), "mongo1", facts, tmp_path, in_container=True)
    out = step.check(ctx)
    assert isinstance(out, Skip) and "systemd-nspawn" in out.reason and "machine-wide" in out.reason
    vm = make_ctx(recorded_plan(), "mongo1", {**facts, "_container": "none"}, tmp_path)
    would = step.check(vm)
    assert isinstance(would, Change) and would.ops
    assert would.summary in out.reason


def test_thp_runs_on_mongo_hosts_only(recorded_plan, tmp_path):
    step = hardening.TransparentHugePages()
    assert step.applies(make_ctx(recorded_plan(), "mongo2", {}, tmp_path))
    assert not step.applies(make_ctx(recorded_plan(), "web1", {}, tmp_path))


def test_mongodb_port_only_from_peers_never_the_network(recorded_plan, tmp_path):
    facts = load_facts("debian12-mongo1-hardened")
    rules = hardening.Ufw().rules(make_ctx(recorded_plan(), "mongo1", facts, tmp_path))
    mongo = [cmd for cmd, _ in rules if "27017" in cmd]
    assert sorted(mongo) == sorted(f"allow in on eth1 from 198.18.81.{n} to 198.18.81.10 port 27017 proto tcp"
                                   for n in (11, 12, 13))
    assert not any("/" in cmd.split("from ")[-1] for cmd in mongo)     # no network ranges
    web = hardening.Ufw().rules(make_ctx(recorded_plan(), "web1", load_facts("debian12-web1-hardened"), tmp_path))
    assert [cmd for cmd, _ in web] == ["limit 22/tcp", "allow 80/tcp", "allow 443/tcp"]
