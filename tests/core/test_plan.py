"""The plan model and its answers file: bad answers give one clear line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from wizard import cli
from wizard.plan import PlanError, load_plan, plan_from_dict, plan_to_toml, save_plan

from .conftest import answers

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: dict | str, name: str = "answers.toml") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else tomli_w.dumps(data))
    return p


def test_round_trip_through_toml(tmp_path, client_key):
    plan = plan_from_dict(answers(tmp_path, client_key))
    p = tmp_path / "out.toml"
    save_plan(plan, p)
    again = load_plan(p)
    assert again == plan
    assert "chat.lab.test" in plan_to_toml(plan)


def test_derived_values(tmp_path, client_key):
    plan = plan_from_dict(answers(tmp_path, client_key, provider="digitalocean", region="nyc3",
                                  sizes={"mongo": "s-1vcpu-2gb", "web": "s-1vcpu-1gb"}))
    assert plan.instances == 2          # at least 2 on a 1-vCPU host, as the runbook runs
    assert plan.hosts() == [("mongo1", "mongo"), ("mongo2", "mongo"), ("mongo3", "mongo"), ("web1", "web")]
    assert plan.needs_scalability_licence
    big = plan.model_copy(update={"sizes": plan.sizes.model_copy(update={"web": "s-4vcpu-8gb"})})
    assert big.instances == 4
    trial = plan_from_dict(answers(tmp_path, client_key, mongo_members=1, instances_per_host=1))
    assert trial.trial and not trial.needs_scalability_licence


def test_relative_key_path_is_relative_to_the_answers_file(tmp_path, client_key):
    data = answers(tmp_path, client_key)
    data["ssh_key"] = "id_ed25519"
    plan = load_plan(write(tmp_path, data))
    assert plan.ssh_key == client_key


def test_lab_provider_forces_lab_region(tmp_path, client_key):
    assert plan_from_dict(answers(tmp_path, client_key, region="nyc3")).region == "lab"


BAD = [
    # (id, override or raw text, expected words in the one line)
    ("wrong type for members", {"mongo_members": "three"}, "mongo_members"),
    ("even member count", {"mongo_members": 2}, "even"),
    ("four members", {"mongo_members": 4}, "mongo_members"),
    ("unknown region", {"provider": "digitalocean", "region": "mars1"}, "region"),
    ("unknown size", {"sizes": {"mongo": "s-64vcpu-1tb"}}, "sizes.mongo"),
    ("unknown image", {"image": "windows-2022"}, "image"),
    ("unknown provider", {"provider": "aws"}, "provider"),
    ("bad domain", {"domain": "not a domain"}, "domain"),
    ("ip as domain", {"domain": "198.18.0.10"}, "domain"),
    ("bad email", {"admin_email": "ops-at-example"}, "admin_email"),
    ("incompatible versions", {"rocketchat_version": "7.12.0", "mongodb_version": "8.0"}, "mongodb_version"),
    ("unsupported mongo", {"mongodb_version": "4.4"}, "mongodb_version"),
    ("unsupported release", {"rocketchat_version": "5.4.0"}, "rocketchat_version"),
    ("unparseable release", {"rocketchat_version": "latest-ish"}, "rocketchat_version"),
    ("missing key file", {"ssh_key": "/nonexistent/id_ed25519"}, "ssh_key"),
    ("bad name", {"name": "My Chat!"}, "name"),
    ("root as sudo user", {"sudo_user": "root"}, "sudo_user"),
    ("bad backups", {"backups": "hourly"}, "backups"),
    ("zero app hosts", {"app_hosts": 0}, "app_hosts"),
    ("too many instances", {"instances_per_host": 99}, "instances_per_host"),
    ("bad mirror url", {"mirrors": {"mongodb_apt": "ftp://mirror"}}, "mirrors.mongodb_apt"),
    ("bad acme url", {"acme_server": "not a url"}, "acme_server"),
    ("bad time zone", {"timezone": "Mars/Olympus"}, "timezone"),
    ("unknown setting", {"colour": "blue"}, "colour"),
    ("missing domain", {"domain": None}, "domain"),
    ("bool for app hosts", {"app_hosts": [1, 2]}, "app_hosts"),
]


@pytest.mark.parametrize("case,override,words", BAD, ids=[b[0] for b in BAD])
def test_bad_answers_give_one_line_and_exit_2(tmp_path, client_key, capsys, case, override, words):
    data = answers(tmp_path, client_key)
    for k, v in override.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    rc = cli.main(["apply", "--answers", str(write(tmp_path, data)), "--yes"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rocket-wizard: ")
    assert words in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case,content,words", [
    ("malformed toml", "name = 'x\ndomain=", "not valid TOML"),
    ("not utf-8", b"\xff\xfe\x00bad", "not UTF-8"),
    ("missing file", None, "no such answers file"),
    ("a folder", "DIR", "is a folder"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_unreadable_answers_files(tmp_path, capsys, case, content, words):
    p = tmp_path / "answers.toml"
    if content == "DIR":
        p.mkdir()
    elif isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    rc = cli.main(["plan", "--answers", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and words in err


def test_exit_code_and_no_traceback_from_the_real_command(tmp_path, client_key):
    p = write(tmp_path, answers(tmp_path, client_key, mongo_members=2))
    r = subprocess.run([sys.executable, "-m", "wizard.cli", "plan", "--answers", str(p)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_plan_prints_every_droplet_and_total_without_token(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITALOCEAN_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))      # no doctl config, no key: plan still prints
    r = subprocess.run([sys.executable, "-m", "wizard.cli", "plan", "--answers", "examples/production.toml"],
                       capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    for host in ("mongo1", "mongo2", "mongo3", "web1"):
        assert host in r.stdout
    assert "s-1vcpu-2gb" in r.stdout and "12.00" in r.stdout
    # 3 x 12 + 24 = 60 of droplets, +20% weekly backups = 72
    assert "60.00 USD/month" in r.stdout and "72.00 USD/month" in r.stdout
    assert "scalability" in r.stdout
    assert "warning: ssh_key" in r.stdout


def test_trial_example_is_valid_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    plan = load_plan(ROOT / "examples/trial.toml", check_files=False)
    assert plan.trial and plan.hosts() == [("mongo1", "mongo"), ("web1", "web")]
    with pytest.raises(PlanError, match="ssh_key"):
        load_plan(ROOT / "examples/trial.toml")
