"""Keeps one lab host running: restarts systemd-nspawn when the host reboots.

`systemctl reboot` inside a host makes systemd-nspawn exit with 133; a real machine
would come back, so this loop starts nspawn again. Any other exit (poweroff, halt,
`lab.stop_host`) ends the loop. Runs as its own session so it outlives the process
that booted the host (`rocket-wizard lab up` then another terminal).

Standalone on purpose (no wizard imports): started as `python3 supervisor.py DIR`,
it reads DIR/nspawn.json = {"argv": [...], "env": {...}} and writes into DIR:
supervisor.pid, nspawn.pid, boots (count), exit (last nspawn exit code), nspawn.log.
DIR/stop present = do not restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REBOOT = 133


def put(path: Path, text: str) -> None:
    """Readers poll these files: never let them see one half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(machine_dir: str) -> int:
    d = Path(machine_dir)
    cfg = json.loads((d / "nspawn.json").read_text())
    put(d / "supervisor.pid", f"{os.getpid()}\n")
    child: list[subprocess.Popen] = []

    def on_term(signum, frame):
        (d / "stop").touch()
        if child and child[0].poll() is None:
            # nspawn turns SIGTERM into an orderly shutdown of the host's systemd.
            child[0].send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    env = dict(os.environ, **cfg.get("env", {}))
    boots = 0
    rc = 0
    print(f"{time.strftime('%H:%M:%S')} supervisor {os.getpid()} for {d}", flush=True)
    try:
        while not (d / "stop").exists():
            boots += 1
            put(d / "boots", f"{boots}\n")
            with open(d / "nspawn.log", "ab", buffering=0) as log:
                log.write(f"\n--- supervisor: boot {boots} at {time.strftime('%H:%M:%S')}\n".encode())
                p = subprocess.Popen(cfg["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
                child[:] = [p]
                put(d / "nspawn.pid", f"{p.pid}\n")
                if (d / "stop").exists():  # stop asked while we were starting it
                    p.send_signal(signal.SIGTERM)
                while True:
                    try:
                        rc = p.wait()
                        break
                    except InterruptedError:
                        continue
                log.write(f"--- supervisor: nspawn exited {rc}\n".encode())
            put(d / "exit", f"{rc}\n")
            if rc != REBOOT:
                break
    finally:
        print(f"{time.strftime('%H:%M:%S')} supervisor exits: boots {boots}, last exit {rc}, "
              f"stop {(d / 'stop').exists()}", flush=True)
        for f in ("nspawn.pid", "supervisor.pid"):
            (d / f).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
