"""Kill -9 the wizard in the middle of creating droplets, run it again: exactly 4 droplets.

The wizard run is tests/digitalocean/do_driver.py (the provider's ensure_hosts for a
production plan, as the engine calls it) in a subprocess, against the API double.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("do_driver.py")
NAMES = ["mongo1", "mongo2", "mongo3", "web1"]


def _run(env, deployment, key_file):
    return subprocess.Popen([sys.executable, str(DRIVER), deployment, str(key_file)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_mid_create_then_rerun(double, token, public_key, tmp_path, deployment, rerun_timeout=90):
    key_file = tmp_path / "id.pub"
    key_file.write_text(public_key)
    tag = f"rw-{deployment}"
    env = {**os.environ, "DIGITALOCEAN_ACCESS_TOKEN": token, "DIGITALOCEAN_END_POINT": double.end_point,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Every create happens at once but its answer is 2 s late: the second create exists at the
    # provider while the process that asked for it has not heard back yet.
    double.add_fault(path=r"^/v2/droplets/?$", method="POST", delay=2.0, delay_after=True, count=-1)
    proc = _run(env, deployment, key_file)
    deadline = time.monotonic() + 60
    while not (double.create_calls() >= 2 and len(double.droplets_tagged(tag)) >= 2):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the driver never made a second create call"
        time.sleep(0.02)
    proc.kill()                               # SIGKILL: no cleanup, no state write
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -9
    assert out.count("RESOURCE droplet") == 1, out     # it heard back about mongo1 only
    assert len(double.droplets_tagged(tag)) == 2        # mongo2 exists, unknown to the dead run

    double.faults.clear()
    rerun = _run(env, deployment, key_file)
    out, _ = rerun.communicate(timeout=rerun_timeout)
    assert rerun.returncode == 0, out
    assert "DONE" in out
    tagged = double.droplets_tagged(tag)
    assert sorted(d["name"] for d in tagged) == [f"{deployment}-{n}" for n in NAMES]
    assert all(d["status"] == "active" for d in tagged)
    assert double.create_calls() == 4
    assert out.count("RESOURCE droplet") == 4          # the rerun reports the two it found as well
    assert len(double.ssh_keys) == 1
    assert sum(v["name"] == f"{tag}-nyc3" for v in double.vpcs.values()) == 1
    return tagged


def test_killed_between_create_and_state_write_reruns_to_exactly_four(do_double, do_token, operator_key, tmp_path):
    kill_mid_create_then_rerun(do_double, do_token, operator_key[1], tmp_path, "demo")


@pytest.mark.lab
def test_killed_mid_create_with_lab_hosts(lab, lab_double, do_token, operator_key, tmp_path):
    """The same with real hosts booting behind the double: exactly 4 lab hosts, then none."""
    kill_mid_create_then_rerun(lab_double, do_token, operator_key[1], tmp_path, "do-kill", rerun_timeout=300)
    hosts = sorted(h.name for h in lab.hosts() if h.name.startswith("do-kill-"))
    assert hosts == [f"do-kill-{n}" for n in NAMES]
    from wizard.providers.digitalocean import DigitalOceanProvider
    gone = DigitalOceanProvider("do-kill", token=do_token, region="nyc3", image="debian-12-x64",
                                poll_interval=0.5).destroy(progress=lambda m: None)
    assert len(gone) == 4
    lab_double.wait_idle()
    assert not [h for h in lab.hosts() if h.name.startswith("do-kill-")]
