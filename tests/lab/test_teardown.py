"""`lab down` leaves nothing of its prefix, also after `kill -9` of a `lab up` in progress.

These take the session lab down and bring it up again, so they skip when another test
still holds hosts in it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wizard.lab import image

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def leftovers(lab) -> dict:
    mark = str(lab.workdir)
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in cmd and int(pid) != os.getpid():
            procs.append(cmd)
    found = {
        "netns": lab.net.leftover_netns(),
        "links": lab.net.leftover_links(),
        "iptables": lab.net.nat_rules(),
        "mounts": [m for m in image.mounted() if m.startswith(mark)],
        "processes": procs,
        "workdir": [str(lab.workdir)] if lab.workdir.exists() else [],
    }
    return {k: v for k, v in found.items() if v}


@pytest.fixture
def idle_lab(lab):
    if lab.hosts():
        pytest.skip("other tests hold hosts in the session lab")
    yield lab
    lab.up()  # give the session its lab back


def cli(lab, *args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "wizard.lab.cli", *args, "--prefix", lab.prefix,
                             "--subnet", lab.subnet], env=env, cwd=ROOT, **kw)


def test_down_leaves_nothing(idle_lab):
    lab = idle_lab
    lab.boot_hosts(["d1", "d2"])
    lab.exec("d1", ["true"], check=True)
    assert leftovers(lab)  # the check can see things
    lab.down()
    assert leftovers(lab) == {}
    lab.down()  # again: nothing to do, no error
    assert leftovers(lab) == {}


def test_down_after_kill_9_of_up_in_progress(idle_lab, tmp_path):
    lab = idle_lab
    lab.down()
    # A process that brings the lab up and boots a host; killed while the host boots.
    script = tmp_path / "up.py"
    script.write_text(
        "import sys\n"
        "from wizard.lab.lab import Lab\n"
        f"lab = Lab(prefix={lab.prefix!r}, subnet={lab.subnet!r})\n"
        "lab.up()\n"
        "lab.boot_host('k1')\n"
        "import time; time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    ns = Path("/run/netns") / lab.net.netns("k1")
    deadline = time.monotonic() + 60
    while not ns.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # let it get as far as the mount and the supervisor
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ns.exists() and leftovers(lab)
    # Also a `lab up` killed right after its bridges exist.
    q = cli(lab, "up")
    while not lab.net.bridges_exist() and q.poll() is None:
        time.sleep(0.01)
    q.send_signal(signal.SIGKILL)
    q.wait()
    d = cli(lab, "down", stdout=subprocess.PIPE, text=True)
    out, _ = d.communicate(timeout=120)
    assert d.returncode == 0, out
    assert leftovers(lab) == {}
