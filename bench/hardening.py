"""Benchmark: the hardening phase on 4 fresh lab hosts, first run and no-op rerun.

    sudo python3 bench/hardening.py [--keep] [--reruns N]

Prints the wall time and SSH round trips of a first run (fresh droplet-like hosts:
apt refresh + upgrade + packages, every step changing) and of reruns with nothing
to do, beside the figures the peers reached on the same lab (shared/notes/lab.md).
Uses the lab prefix rh (198.18.80.0/23) unless RW_HARDENING_LAB_PREFIX/SUBNET say
otherwise. Figures only: no assertion on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "hardening"))

from labcluster import PLANNED, boot_cluster, lab_available  # noqa: E402
from wizard.engine import Runner  # noqa: E402

# Time spent gathering facts, per host: the engine re-gathers every remaining step's
# facts after each change, so on a first run this shows what that costs (measured
# by wrapping Runner.gather; the behaviour is unchanged).
GATHER: dict[str, list[float]] = {}
_gather = Runner.gather


async def _timed_gather(self, ctx, steps):
    t = time.monotonic()
    try:
        await _gather(self, ctx, steps)
    finally:
        GATHER.setdefault(ctx.host.name, []).append(time.monotonic() - t)


Runner.gather = _timed_gather


def _gathers() -> str:
    out = ", ".join(f"{h} {len(v)}x {sum(v):.1f} s" for h, v in sorted(GATHER.items()))
    GATHER.clear()
    return out

PEERS = "peers on this lab (lab.md): Ansible 104-135 s / 32 s, pyinfra 74-91 s / 6.4 s, plain asyncssh script 31 s first run"


def _slowest(events, n: int = 6) -> str:
    from wizard.events import StepFinished

    worst: dict[str, float] = {}
    for e in events:
        if isinstance(e, StepFinished):
            worst[e.step] = max(worst.get(e.step, 0.0), e.elapsed)
    top = sorted(worst.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k.removeprefix('harden.')} {v:.1f} s" for k, v in top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the lab hosts up")
    ap.add_argument("--reruns", type=int, default=3, help="no-op reruns to time (default 3)")
    args = ap.parse_args()
    why = lab_available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rw-bench-hardening-") as d:
        t0 = time.monotonic()
        c = boot_cluster(Path(d), names=PLANNED)
        print(f"boot: 4 hosts in {time.monotonic() - t0:.1f} s")
        try:
            first, events = c.run_phase()
            print(f"first run:  {first.elapsed:6.1f} s  round trips {sum(first.round_trips.values()):3d} "
                  f"{dict(sorted(first.round_trips.items()))}  changes {first.changed}  ok {first.ok}")
            print(f"  fact gathering: {_gathers()}")
            print(f"  slowest steps (max over hosts): {_slowest(events)}")
            if not first.ok:
                print(f"failures: {first.failures}")
                return 1
            times = []
            for i in range(args.reruns):
                r, _ = c.run_phase()
                times.append(r.elapsed)
                print(f"rerun {i + 1}:    {r.elapsed:6.2f} s  round trips {sum(r.round_trips.values()):3d} "
                      f"{dict(sorted(r.round_trips.items()))}  changes {r.changed}  ok {r.ok}")
                print(f"  fact gathering: {_gathers()}")
            print(f"summary: first run {first.elapsed:.1f} s; no-op rerun median {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}), {sum(r.round_trips.values()) / len(r.round_trips):.0f} round trip(s) per host")
            print(PEERS)
        finally:
            if not args.keep:
                c.lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
