"""Boot-to-SSH figures for lab hosts: `sudo python3 bench/lab_boot.py [--hosts 4]`.

Uses RW_LAB_PREFIX / RW_LAB_SUBNET (default rwt / 198.19.0.0/23) and takes that lab
down at the end. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wizard.lab.lab import Lab  # noqa: E402


def mem_used_mb() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kb = lambda k: int(info[k].split()[0])  # noqa: E731
    return (kb("MemTotal") - kb("MemAvailable")) / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    a = ap.parse_args()
    lab = Lab(prefix=os.environ.get("RW_LAB_PREFIX", "rwt"), subnet=os.environ.get("RW_LAB_SUBNET", "198.19.0.0/23"))
    lab.down()
    t = time.monotonic()
    lab.up()
    print(f"lab up (image cached: extract/reuse, bridges, NAT): {time.monotonic() - t:.2f} s")
    names = [f"b{i}" for i in range(1, a.hosts + 1)]
    mem0 = mem_used_mb()
    t0 = time.monotonic()
    ssh_at: dict[str, float] = {}
    ci_at: dict[str, float] = {}

    def one(n: str) -> None:
        lab.boot_host(n)
        ssh_at[n] = time.monotonic() - t0
        lab.wait_cloud_init(n)
        ci_at[n] = time.monotonic() - t0

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(one, names))
    for n in names:
        print(f"{n}: sshd listening {ssh_at[n]:.2f} s, cloud-init done {ci_at[n]:.2f} s")
    print(f"{len(names)} hosts in parallel on {os.cpu_count()} cores: all SSH-ready {max(ssh_at.values()):.2f} s, "
          f"all cloud-init done {max(ci_at.values()):.2f} s")
    states = {n: lab.exec(n, ["systemctl", "is-system-running", "--wait"]).stdout.strip() for n in names}
    print(f"system state: {states}")
    print(f"memory for {len(names)} idle hosts: about {mem_used_mb() - mem0:.0f} MB")
    t = time.monotonic()
    lab.reboot_host(names[0])
    print(f"reboot from inside to sshd listening again: {time.monotonic() - t:.2f} s")
    t = time.monotonic()
    lab.exec(names[0], ["apt-get", "update", "-q"], check=True)
    print(f"apt-get update inside a host (through NAT): {time.monotonic() - t:.2f} s")
    if not a.keep:
        t = time.monotonic()
        lab.down()
        print(f"lab down ({len(names)} hosts): {time.monotonic() - t:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
