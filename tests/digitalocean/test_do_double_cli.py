"""The double runs on its own: `python -m tests.doubles.digitalocean --port 0`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_standalone_double_prints_its_end_point_and_serves():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "tests.doubles.digitalocean", "--port", "0", "--token", "cli-tok",
                             "--active-delay", "0.1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("DIGITALOCEAN_END_POINT=http://127.0.0.1:") and line.endswith("/v2/")
        end_point = line.split("=", 1)[1]
        r = requests.get(end_point + "account", headers={"Authorization": "Bearer cli-tok"}, timeout=5)
        assert r.status_code == 200 and r.json()["account"]["status"] == "active"
        assert "ratelimit-remaining" in r.headers
        base = end_point[: -len("/v2/")]
        assert requests.post(base + "/_double/faults", json={"path": "^/v2/account$", "status": 500}, timeout=5).ok
        assert requests.get(end_point + "account", headers={"Authorization": "Bearer cli-tok"}, timeout=5).status_code == 500
        assert requests.get(base + "/_double/stats", timeout=5).json()["requests"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
