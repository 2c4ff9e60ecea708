"""Figures for the mongod stand-in on loopback (127.0.48.x): time from replSetInitiate to a
PRIMARY, failover time after stopping the primary, and majority-acknowledged inserts/s.

    python3 bench/mongo_standin.py [--trials 3]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "mongodb"))

import pymongo  # noqa: E402

from mongod_loopback import Instance, new_key  # noqa: E402

PORT = 27419


def client(i, **kw):
    return pymongo.MongoClient(i.addr, i.port, directConnection=True, serverSelectionTimeoutMS=2000, **kw)


def primary(insts):
    for i in insts:
        if i.proc is None:
            continue
        try:
            if client(i).admin.command("hello").get("isWritablePrimary"):
                return i
        except pymongo.errors.PyMongoError:
            pass
    return None


def wait_primary(insts, exclude=None, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        p = primary(insts)
        if p is not None and p is not exclude:
            return p, time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit("no primary")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rm-bench-"))
    key = new_key()
    insts = [Instance(root, f"m{n}", f"127.0.48.{20 + n}", PORT, key) for n in range(3)]
    try:
        for i in insts:
            i.start()
        t0 = time.monotonic()
        client(insts[0]).admin.command("replSetInitiate", {"_id": "rs0", "members": [
            {"_id": n, "host": i.host} for n, i in enumerate(insts)]})
        p, _ = wait_primary(insts)
        print(f"replSetInitiate -> PRIMARY: {time.monotonic() - t0:.2f} s")
        client(p).admin.command("createUser", "admin", pwd="pw", roles=["root"])
        c = client(p, username="admin", password="pw")
        n = 300
        t0 = time.monotonic()
        for k in range(n):
            c.bench.docs.insert_one({"k": k})
        dt = time.monotonic() - t0
        print(f"inserts with w:majority (one at a time): {n / dt:.0f}/s")
        times = []
        for _ in range(args.trials):
            old = primary(insts)
            old.stop()
            new, dt = wait_primary(insts, exclude=old)
            times.append(dt)
            old.start()
            time.sleep(3)
        print(f"failover after stopping the primary: {', '.join(f'{t:.1f}' for t in times)} s "
              f"(electionTimeoutMillis 10000 + up to 15 % offset)")
    finally:
        for i in insts:
            i.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
