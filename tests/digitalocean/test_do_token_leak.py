"""The token appears in no log record, no exception text and no file written."""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path

import pytest

from wizard.providers.base import ProviderError
from wizard.providers.digitalocean import RetryPolicy


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_token_leaks_nowhere(make_provider, do_double, do_token, production_specs, make_specs,
                             tmp_path, monkeypatch, caplog):
    from wizard.state import StateStore

    state_root = tmp_path / "state"
    monkeypatch.setenv("ROCKET_WIZARD_STATE_DIR", str(state_root))
    store = StateStore("demo", root=state_root)

    def on_resource(kind, rid, data):     # as the Deployment does: straight into the state file
        store.record_resource(kind, rid, data.get("name", ""), data)
        store.save()

    errors: list[BaseException] = []
    caplog.set_level(logging.DEBUG)       # root: wizard, digitalocean, urllib3, requests...
    # Every path the provider has: retries, lost answers, refusals, success, destroy.
    do_double.add_fault(path=r"^/v2/droplets/?$", method="GET", status=429, retry_after=1, count=1)
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", status=500, count=1)
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", delay=1.2, delay_after=True, count=1)
    p = make_provider(policy=RetryPolicy(budget=10, base_delay=0.05, max_delay=0.2, read_timeout=0.6),
                      sleep=lambda s: time.sleep(min(s, 0.05)))
    p.prices()
    p.ensure_hosts(production_specs, on_resource=on_resource, progress=lambda m: logging.getLogger("t").info(m))
    p.list_hosts()
    bad = make_specs([("web2", "web")])
    bad[0] = type(bad[0])("web2", "web", "no-such-size", bad[0].user_data)
    for action in (lambda: p.ensure_hosts(bad, on_resource=on_resource, progress=print),
                   lambda: make_provider(token="wrong-" + do_token[::-1]).prices()):
        with pytest.raises(ProviderError) as e:
            action()
        errors.append(e.value)
    do_double.add_fault(path="^/v2/account$", status=503, count=-1)
    with pytest.raises(ProviderError) as e:
        make_provider(policy=RetryPolicy(budget=0.5, base_delay=0.1)).client.account()
    errors.append(e.value)
    do_double.faults.clear()
    p.destroy(progress=lambda m: logging.getLogger("t").info(m))

    assert len(do_double.exchanges) > 20                        # the token really was used, a lot
    assert do_double.droplets == {}
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "POST /v2/droplets" in logged                        # DEBUG logging was on
    assert do_token not in logged
    for exc in errors:
        text = "".join(traceback.format_exception(exc))
        assert do_token not in text and do_token not in repr(exc)
    files = _all_files(state_root)
    assert files, "the state was written"
    for f in files:
        assert do_token.encode() not in f.read_bytes(), f
    for f in _all_files(tmp_path):
        assert do_token.encode() not in f.read_bytes(), f
    assert do_token not in repr(p) and do_token not in repr(vars(p)) and do_token not in repr(vars(p.client))
    assert do_token not in repr(vars(p.client.transport))
