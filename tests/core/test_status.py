"""Status probes over real SSH: the app instances' health, as the board shows them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wizard.deploy import ClusterStatus, Deployment
from wizard.engine import Runner

from .test_engine import make


class Fake(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/livez" and self.server.server_address[1] % 2:     # odd port healthy
            body, code = b"ok", 200
        elif self.path == "/api/info":
            body, code = json.dumps({"version": "8.2.0", "success": True}).encode(), 200
        else:
            body, code = b"down", 503
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def instances():
    servers = []
    for port in (3001, 3002):
        try:
            s = ThreadingHTTPServer(("127.0.0.1", port), Fake)
        except OSError:
            pytest.skip(f"port {port} is taken on this machine")
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    yield
    for s in servers:
        s.shutdown()
        s.server_close()


async def test_app_probe_reads_each_instance(tmp_path, state_dir, ssh_server, client_key, instances):
    from recipes import rocketchat

    plan, store = make(tmp_path, ssh_server, client_key, hosts=("web1",))
    plan = plan.model_copy(update={"instances_per_host": 2})
    runner = Runner(plan, store, [])
    out = ClusterStatus()
    try:
        await rocketchat.status_probe(Deployment(plan, store), runner, out)
    finally:
        await runner.pool.close()
    assert [(a.host, a.port, a.healthy, a.version) for a in out.apps] == [
        ("web1", 3001, True, "8.2.0"), ("web1", 3002, False, "8.2.0")]


async def test_status_reports_host_figures_and_unreachable_hosts(tmp_path, state_dir, ssh_server, client_key):
    plan, store = make(tmp_path, ssh_server, client_key, hosts=("mongo1", "web1"))
    store.state.hosts["web1"].ready = False
    st = await Deployment(plan, store, phases=[]).status()
    by = {h.name: h for h in st.hosts}
    assert by["mongo1"].reachable and by["mongo1"].load is not None and 0 <= by["mongo1"].disk_used_pct <= 100
    assert not by["web1"].reachable and by["web1"].error == "not created yet"
