"""wizard.releases on recorded release-server documents (no network)."""

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from wizard import releases
from wizard.releases import IncompatiblePlan, ReleaseError

DATA = Path(__file__).parent / "data"


def load(name):
    return json.loads((DATA / name).read_text())


def plan(version="8.2.0", mongo="8.0", **mirrors):
    m = {"rocketchat_releases": None, "node": None, "deno": None} | mirrors
    return SimpleNamespace(rocketchat_version=version, mongodb_version=mongo,
                           mirrors=SimpleNamespace(**m))


def recorded(mapping):
    """A fetch that answers from recorded documents and fails on anything else."""
    def fetch(url):
        for suffix, name in mapping.items():
            if url.endswith(suffix):
                return load(name)
        raise ReleaseError(f"{url}: not found (no such release?)")
    return fetch


def test_parse_real_shape_8_2():
    r = releases.parse_info(load("info-8.2.0.json"), "8.2.0")
    assert r.version == "8.2.0"
    assert r.node == "22.22.3"
    assert r.mongo == ("8.0",)
    assert r.deno == "2.6.10"          # not in the document: the matrix's Deno 2 default
    assert r.tarball_url == "https://releases.rocket.chat/8.2.0/download"
    assert r.node_url() == "https://nodejs.org/dist/v22.22.3/node-v22.22.3-linux-x64.tar.gz"
    assert r.deno_url() == "https://github.com/denoland/deno/releases/download/v2.6.10/deno-x86_64-unknown-linux-gnu.zip"


def test_bare_majors_become_series():
    r = releases.parse_info(load("info-7.10.0-bare-majors.json"), "7.10.0")
    assert r.mongo == ("5.0", "6.0", "7.0")
    assert r.deno == "1.43.5"


def test_old_release_needs_no_deno_and_is_refused_for_mongo_8():
    r = releases.parse_info(load("info-4.8.1.json"), "4.8.1")
    assert r.deno is None and r.node == "14.18.3"
    problems = releases.check_plan(plan("4.8.1", "8.0"), r)
    assert any("supports MongoDB 3.6, 4.0, 4.2, 4.4, 5.0" in p for p in problems)
    assert any("cannot install" in p for p in problems)


def test_resolve_accepts_compatible_plan_from_mirror():
    base = "http://198.18.64.1:8080/rocketchat"
    r = releases.resolve(plan(rocketchat_releases=base + "/"),
                         recorded({"/8.2.0/info": "info-8.2.0.json"}))
    assert r.info_url == f"{base}/8.2.0/info"
    assert r.tarball_url == f"{base}/8.2.0/download"


def test_resolve_refuses_incompatible_mongo():
    with pytest.raises(IncompatiblePlan, match="supports MongoDB 8.0; the plan asks for 7.0"):
        releases.resolve(plan("8.2.0", "7.0"), recorded({"/8.2.0/info": "info-8.2.0.json"}))


def test_resolve_unknown_release_is_clear():
    with pytest.raises(ReleaseError, match="not found"):
        releases.resolve(plan("9.99.0"), recorded({}))


def test_empty_document_is_not_a_release():
    with pytest.raises(ReleaseError, match="not found"):
        releases.parse_info({}, "1.2.3")


def test_node_range_picks_newest_in_first_alternative():
    idx = releases.node_index("x", recorded({"index.json": "node-index.json"}))
    assert releases.pick_node(">=22.22.3 <23 or >=24.15.0 <25", idx) == "22.23.5"
    assert releases.pick_node("22", idx) == "22.23.5"
    assert releases.pick_node("v22.22.3", idx) == "22.22.3"
    assert releases.pick_node(">=22.22.3 <23", None) == "22.22.3"     # offline: lower bound
    with pytest.raises(ReleaseError):
        releases.pick_node("23", idx)


def test_resolve_range_reads_node_index_from_node_mirror():
    info = load("info-8.2.0.json") | {"nodeVersion": ">=22.22.3 <23 || >=24.15.0 <25"}
    seen = []

    def fetch(url):
        seen.append(url)
        return info if url.endswith("/info") else load("node-index.json")
    r = releases.resolve(plan(node="http://mirror/node"), fetch)
    assert r.node == "22.23.5"
    assert "http://mirror/node/index.json" in seen


@pytest.mark.parametrize("raw,want", [("8.0", "8.0"), (8, "8.0"), (7.0, "7.0"),
                                      ("6.0.4", "6.0"), ("v5", "5.0")])
def test_mongo_series(raw, want):
    assert releases.mongo_series(raw) == want


def test_fetch_json_over_http(tmp_path):
    """The real urllib path against a local server (loopback only)."""
    (tmp_path / "8.2.0").mkdir()
    (tmp_path / "8.2.0" / "info").write_text((DATA / "info-8.2.0.json").read_text())
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        r = releases.resolve(plan(rocketchat_releases=base))
        assert r.node == "22.22.3"
        with pytest.raises(ReleaseError, match="not found"):
            releases.fetch_json(f"{base}/9.9.9/info")
    finally:
        srv.shutdown()
        srv.server_close()
    with pytest.raises(ReleaseError, match="cannot reach"):
        releases.fetch_json(f"{base}/8.2.0/info", timeout=2)
