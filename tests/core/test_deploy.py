"""Deployment: review, and provisioning that survives being killed anywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from tests.doubles.digitalocean import DigitalOceanDouble
from wizard.deploy import Deployment
from wizard.plan import plan_from_dict

from .conftest import answers

ROOT = Path(__file__).resolve().parents[2]


def test_review_prices_every_host_and_counts_backups(tmp_path, client_key):
    plan = plan_from_dict(answers(tmp_path, client_key, provider="digitalocean", region="nyc3", backups="daily"))
    r = Deployment(plan).review()
    assert [(h.name, h.size, h.price_monthly) for h in r.hosts] == [
        ("mongo1", "s-1vcpu-2gb", 12.0), ("mongo2", "s-1vcpu-2gb", 12.0), ("mongo3", "s-1vcpu-2gb", 12.0),
        ("web1", "s-2vcpu-4gb", 24.0)]
    assert r.droplets_monthly == 60.0 and r.backups_monthly == 18.0 and r.total_monthly == 78.0
    assert not r.priced_live and any("scalability" in n for n in r.notes)
    live = Deployment(plan).review({"s-1vcpu-2gb": 14.0, "s-2vcpu-4gb": 28.0})
    assert live.priced_live and live.droplets_monthly == 70.0
    mongo_installs = " ".join(r.hosts[0].installs)
    assert "MongoDB 8.0" in mongo_installs and "THP on" in mongo_installs


@pytest.fixture
def double():
    d = DigitalOceanDouble(token="dop_v1_" + "ab" * 32, active_delay=0.1, lab_subnet="198.19.32.0/23").start()
    yield d
    d.stop()


KILLS = [f"{m}:{n}" for n in (1, 2, 3, 4) for m in ("before-record", "after-record")]


def test_killed_anywhere_in_provisioning_never_duplicates(tmp_path, state_dir, client_key, double):
    plan = answers(tmp_path, client_key, provider="digitalocean", region="nyc3", image="debian-12-x64",
                   name="kill-test")
    path = tmp_path / "answers.toml"
    path.write_text(tomli_w.dumps(plan))
    env = dict(os.environ, DIGITALOCEAN_END_POINT=double.end_point, RW_TEST_TOKEN=double.token,
               ROCKET_WIZARD_STATE_DIR=str(state_dir))
    env.pop("DIGITALOCEAN_ACCESS_TOKEN", None)
    child = Path(__file__).with_name("deploy_child.py")
    for spec in KILLS + ["none"]:
        r = subprocess.run([sys.executable, str(child), str(path), spec], env=env, capture_output=True,
                           text=True, timeout=120)
        if spec == "none":
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode in (-signal.SIGKILL, 0), r.stderr
        state_file = state_dir / "kill-test" / "state.json"
        if state_file.exists():
            json.loads(state_file.read_text())          # readable after every kill
        tagged = [d for d in double.droplets.values() if "rw-kill-test" in d["tags"]]
        names = sorted(d["name"] for d in tagged)
        assert len(names) == len(set(names)), f"duplicate droplet after {spec}: {names}"
    state = json.loads((state_dir / "kill-test" / "state.json").read_text())
    assert sorted(names) == ["kill-test-mongo1", "kill-test-mongo2", "kill-test-mongo3", "kill-test-web1"]
    ids = {str(d["id"]) for d in tagged}
    assert {h["droplet_id"] for h in state["hosts"].values()} == ids
    assert all(h["public_ip"] and h["private_ip"] and h["host_key"] for h in state["hosts"].values())
    assert double.token not in (state_dir / "kill-test" / "state.json").read_text()
