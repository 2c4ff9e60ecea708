"""Kill -9 the wizard in the middle of creating droplets, run it again: exactly 4 droplets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("do_driver.py")


def _run(env, key_file):
    return subprocess.Popen([sys.executable, str(DRIVER), "demo", str(key_file)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_between_create_and_state_write_reruns_to_exactly_four(do_double, do_token, operator_key, tmp_path):
    key_file = tmp_path / "id.pub"
    key_file.write_text(operator_key[1])
    env = {**os.environ, "DIGITALOCEAN_ACCESS_TOKEN": do_token, "DIGITALOCEAN_END_POINT": do_double.end_point,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Every create happens at once but its answer is 2 s late: the second create exists at the
    # provider while the process that asked for it has not heard back yet.
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", delay=2.0, delay_after=True, count=-1)
    proc = _run(env, key_file)
    deadline = time.monotonic() + 60
    while not (do_double.create_calls() >= 2 and len(do_double.droplets_tagged("rw-demo")) >= 2):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the driver never made a second create call"
        time.sleep(0.02)
    proc.kill()                               # SIGKILL: no cleanup, no state write
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -9
    assert out.count("RESOURCE droplet") == 1, out     # it heard back about mongo1 only
    assert len(do_double.droplets_tagged("rw-demo")) == 2   # mongo2 exists, unknown to the dead run

    do_double.faults.clear()
    rerun = _run(env, key_file)
    out, _ = rerun.communicate(timeout=90)
    assert rerun.returncode == 0, out
    assert "DONE" in out
    tagged = do_double.droplets_tagged("rw-demo")
    assert sorted(d["name"] for d in tagged) == ["demo-mongo1", "demo-mongo2", "demo-mongo3", "demo-web1"]
    assert do_double.create_calls() == 4
    assert out.count("RESOURCE droplet") == 4         # the rerun reports the two it found as well
    assert len(do_double.ssh_keys) == 1 and sum(v["name"] == "rw-demo-nyc3" for v in do_double.vpcs.values()) == 1
