"""DigitalOceanProvider against the API double (no lab: fake addresses, fast)."""

from __future__ import annotations

import time

import pytest
import requests

from wizard.providers.base import HostSpec, ProviderError
from wizard.providers.digitalocean import (
    ApiError, AuthError, DigitalOceanClient, RetryPolicy, TransientError, addresses, ssh_fingerprint,
)


def _quiet(*_a):
    pass


def test_ensure_creates_four_tagged_droplets_in_plan_order(make_provider, do_double, production_specs):
    p = make_provider()
    machines = p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)

    assert [m.name for m in machines] == ["mongo1", "mongo2", "mongo3", "web1"]
    assert [m.role for m in machines] == ["mongo", "mongo", "mongo", "web"]
    assert all(m.status == "active" for m in machines)
    for m in machines:
        assert m.public_ip.startswith("198.18.32.") and m.private_ip.startswith("198.18.33.")
    assert machines[3].size == "s-2vcpu-4gb" and machines[3].price_monthly == 24.0
    tagged = do_double.droplets_tagged("rw-demo")
    assert sorted(d["name"] for d in tagged) == ["demo-mongo1", "demo-mongo2", "demo-mongo3", "demo-web1"]

    bodies = [e.json() for e in do_double.requests("POST", r"^/v2/droplets/?$")]
    assert len(bodies) == 4
    web = bodies[3]
    assert web["name"] == "demo-web1" and web["size"] == "s-2vcpu-4gb" and web["image"] == "debian-12-x64"
    assert web["tags"] == ["rocket-wizard", "rw-demo", "rw-role-web"]
    assert web["monitoring"] is True and web["ipv6"] is False and web["backups"] is False
    assert web["user_data"] == production_specs[3].user_data
    vpc = next(v for v in do_double.vpcs.values() if v["name"] == "rw-demo-nyc3")
    assert all(b["vpc_uuid"] == vpc["id"] for b in bodies)
    key = next(iter(do_double.ssh_keys.values()))
    assert all(b["ssh_keys"] == [key["id"]] for b in bodies)


def test_second_run_creates_nothing(make_provider, do_double, production_specs):
    p = make_provider()
    first = p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    creates = do_double.create_calls()
    again = make_provider().ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert do_double.create_calls() == creates == 4
    assert [m.id for m in again] == [m.id for m in first]
    assert len(do_double.requests("POST", "/v2/account/keys")) == 1
    assert len(do_double.requests("POST", "/v2/vpcs")) == 1


def test_only_missing_hosts_are_created(make_provider, do_double, production_specs):
    make_provider().ensure_hosts(production_specs[:2], on_resource=_quiet, progress=_quiet)
    seen = []
    make_provider().ensure_hosts(production_specs, on_resource=lambda k, i, d: seen.append((k, d.get("host"))),
                                 progress=_quiet)
    created = [e.json()["name"] for e in do_double.requests("POST", r"^/v2/droplets/?$")]
    assert created == ["demo-mongo1", "demo-mongo2", "demo-mongo3", "demo-web1"]
    # Existing droplets are reported too, so a state file lost or stale is repaired.
    assert [h for k, h in seen if k == "droplet"] == ["mongo1", "mongo2", "mongo3", "web1"]


def test_on_resource_runs_right_after_the_create_call(make_provider, do_double, production_specs):
    """The id reaches the caller before any other request (e.g. polling) is made."""
    order = []

    def on_resource(kind, rid, data):
        if kind == "droplet":
            last = do_double.exchanges[-1]
            order.append((data["name"], last.method, last.path, last.response_json()["droplet"]["id"], int(rid)))

    make_provider().ensure_hosts(production_specs, on_resource=on_resource, progress=_quiet)
    assert len(order) == 4
    for name, method, path, served_id, reported_id in order:
        assert method == "POST" and path.rstrip("/") == "/v2/droplets"
        assert served_id == reported_id


def test_same_name_without_the_tag_is_not_adopted(make_provider, do_double, do_token, production_specs):
    """Names are not unique at DigitalOcean: only the deployment tag identifies our droplets."""
    stranger = {"name": "demo-mongo1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
    r = requests.post(do_double.end_point + "droplets", json=stranger,
                      headers={"Authorization": f"Bearer {do_token}"}, timeout=5)
    assert r.status_code == 202
    stranger_id = r.json()["droplet"]["id"]
    machines = make_provider().ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert machines[0].id != str(stranger_id)
    assert len(do_double.droplets_tagged("rw-demo")) == 4
    p = make_provider()
    gone = p.destroy(progress=_quiet)
    assert len(gone) == 4 and stranger_id in do_double.droplets   # never touched


def test_existing_account_key_is_reused(make_provider, do_double, do_token, operator_key):
    pub = operator_key[1]
    r = requests.post(do_double.end_point + "account/keys", json={"name": "laptop", "public_key": pub},
                      headers={"Authorization": f"Bearer {do_token}"}, timeout=5)
    assert r.status_code == 201
    ids = make_provider().ensure_ssh_keys()
    assert ids == [r.json()["ssh_key"]["id"]]
    assert r.json()["ssh_key"]["fingerprint"] == ssh_fingerprint(pub)
    assert len(do_double.requests("POST", "/v2/account/keys")) == 1


def test_default_vpc_and_daily_backups(make_provider, do_double, make_specs):
    p = make_provider(vpc="default", backups="daily")
    p.ensure_hosts(make_specs([("mongo1", "mongo")]), on_resource=_quiet, progress=_quiet)
    body = do_double.requests("POST", r"^/v2/droplets/?$")[0].json()
    default = next(v for v in do_double.vpcs.values() if v["region"] == "nyc3" and v["default"])
    assert body["vpc_uuid"] == default["id"]
    assert body["backups"] is True and body["backup_policy"]["plan"] == "daily"
    assert not do_double.requests("POST", "/v2/vpcs")


def test_pagination_is_followed(make_provider, do_double, production_specs):
    do_double.max_per_page = 3
    make_provider().ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    hosts = make_provider().list_hosts()
    assert sorted(h.name for h in hosts) == ["mongo1", "mongo2", "mongo3", "web1"]
    assert {h.role for h in hosts} == {"mongo", "web"}
    pages = [e.query.get("page") for e in do_double.requests("GET", r"^/v2/droplets/?$")]
    assert ["2"] in pages


def test_catalogue_listings(make_provider):
    p = make_provider()
    prices = p.prices()
    assert prices["s-1vcpu-2gb"] == 12.0 and prices["s-2vcpu-4gb"] == 24.0
    assert "nyc3" in {r.slug for r in p.regions()}
    assert {"debian-12-x64", "ubuntu-24-04-x64"} <= {i.slug for i in p.images()}
    assert p.client.account()["status"] == "active"


def test_end_point_comes_from_the_environment(do_double, do_token, monkeypatch):
    c = DigitalOceanClient(do_token)
    assert c.end_point == do_double.end_point
    c.account()
    assert do_double.requests("GET", "/v2/account")


# ---------------------------------------------------------------- faults

class _Recorder:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)
        time.sleep(seconds)


def test_429_honours_retry_after(make_provider, do_double, production_specs):
    sleep = _Recorder()
    do_double.add_fault(path=r"^/v2/droplets/?$", method="GET", status=429, retry_after=1, count=2)
    p = make_provider(sleep=sleep)
    t0 = time.monotonic()
    machines = p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert len(machines) == 4
    assert sleep.waits.count(1.0) >= 2
    assert time.monotonic() - t0 >= 2.0
    assert [e.status for e in do_double.requests("GET", r"^/v2/droplets/?$")][:3] == [429, 429, 200]


def test_5xx_and_timeouts_are_retried(make_provider, do_double):
    do_double.add_fault(path="^/v2/account$", status=500, count=2)
    do_double.add_fault(path="^/v2/sizes", delay=1.5, count=1)
    p = make_provider(policy=RetryPolicy(budget=10, base_delay=0.05, max_delay=0.2, read_timeout=0.5))
    assert p.client.account()["status"] == "active"
    assert [e.status for e in do_double.requests("GET", "/v2/account")] == [500, 500, 200]
    assert p.prices()["s-1vcpu-1gb"] == 6.0
    assert len(do_double.requests("GET", "/v2/sizes")) == 2


def test_persistent_5xx_gives_up_within_budget(make_provider, do_double):
    do_double.add_fault(path="^/v2/account$", status=503, count=-1)
    p = make_provider(policy=RetryPolicy(budget=1.0, base_delay=0.1, max_delay=0.2))
    t0 = time.monotonic()
    with pytest.raises(TransientError) as e:
        p.client.account()
    assert time.monotonic() - t0 < 3
    assert "\n" not in str(e.value) and "503" in str(e.value)


def test_create_500_is_retried_after_looking_by_tag(make_provider, do_double, production_specs):
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", status=500, count=1)
    p = make_provider(sleep=lambda s: time.sleep(min(s, 0.05)))
    machines = p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert len(machines) == 4 and len(do_double.droplets_tagged("rw-demo")) == 4
    assert do_double.create_calls() == 5   # one refused, then 4 that worked


def test_create_answer_lost_does_not_duplicate(make_provider, do_double, production_specs):
    """The create happens but the answer never arrives (timeout): the tag finds the droplet."""
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", delay=2.0, delay_after=True, count=1)
    p = make_provider(policy=RetryPolicy(budget=10, base_delay=0.05, max_delay=0.2, read_timeout=0.7),
                      sleep=lambda s: time.sleep(min(s, 0.05)))
    notes = []
    machines = p.ensure_hosts(production_specs, on_resource=_quiet, progress=notes.append)
    assert len(machines) == 4
    assert len(do_double.droplets_tagged("rw-demo")) == 4
    assert do_double.create_calls() == 4
    assert any("the create call failed but the droplet exists" in n for n in notes)


def test_never_active_times_out_with_a_clear_error(make_provider, do_double, production_specs):
    do_double.never_active.add("demo-web1")
    p = make_provider(active_timeout=1.5)
    with pytest.raises(ProviderError) as e:
        p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert "web1" in str(e.value) and "mongo1" not in str(e.value) and "\n" not in str(e.value)


def test_unknown_size_is_a_one_line_422(make_provider, make_specs):
    specs = make_specs([("mongo1", "mongo")])
    specs[0] = type(specs[0])("mongo1", "mongo", "s-99vcpu-1tb", specs[0].user_data)
    with pytest.raises(ApiError) as e:
        make_provider().ensure_hosts(specs, on_resource=_quiet, progress=_quiet)
    assert e.value.status == 422
    assert str(e.value) == ("DigitalOcean rejected POST /v2/droplets (422 unprocessable_entity: "
                            "You specified an invalid size for Droplet creation.)")


def test_wrong_token_is_a_one_line_401(make_provider, do_token):
    bad = "dop_v1_" + "0" * 64
    with pytest.raises(AuthError) as e:
        make_provider(token=bad).prices()
    msg = str(e.value)
    assert e.value.status == 401 and "\n" not in msg
    assert "Unable to authenticate you" in msg and "DIGITALOCEAN_ACCESS_TOKEN" in msg
    assert bad not in msg and do_token not in msg


def test_forbidden_is_a_one_line_403(make_provider, do_double, production_specs):
    do_double.add_fault(path=r"^/v2/droplets/?$", method="POST", status=403, count=1)
    with pytest.raises(AuthError) as e:
        make_provider().ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    assert e.value.status == 403 and "POST /v2/droplets" in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- destroy, DNS

def test_destroy_shows_the_list_then_deletes_by_tag(make_provider, do_double, production_specs):
    p = make_provider()
    p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    shown = []
    assert p.destroy(progress=shown.append, confirm=lambda hosts: False) == []
    assert len(do_double.droplets_tagged("rw-demo")) == 4
    assert any("demo-web1" in line for line in shown)
    gone = p.destroy(progress=_quiet, confirm=lambda hosts: len(hosts) == 4)
    assert sorted(m.name for m in gone) == ["mongo1", "mongo2", "mongo3", "web1"]
    assert do_double.droplets_tagged("rw-demo") == []
    assert p.destroy(progress=_quiet) == []


def test_a_record_is_created_once_and_corrected(make_provider, do_double):
    c = make_provider().client
    r1 = c.ensure_a_record("example.test", "chat", "198.18.32.7")
    r2 = c.ensure_a_record("example.test", "chat", "198.18.32.7")
    assert r1["id"] == r2["id"] and len(do_double.domains["example.test"]) == 1
    r3 = c.ensure_a_record("example.test", "chat", "198.18.32.8")
    assert r3["id"] == r1["id"] and do_double.domains["example.test"][0]["data"] == "198.18.32.8"
    assert c.ensure_a_record("not-ours.test", "chat", "198.18.32.8") is None
    p = make_provider()                                 # the provider's own entry (recipes/tls.py uses it)
    assert p.domains() == ["example.test"]
    apex = p.ensure_a_record("example.test", "@", "198.18.32.9")
    assert apex["name"] == "@" and len(do_double.domains["example.test"]) == 2


def test_addresses_by_type():
    d = {"networks": {"v4": [{"ip_address": "10.1.1.1", "type": "private"},
                             {"ip_address": "203.0.113.9", "type": "public"}], "v6": []}}
    assert addresses(d) == ("203.0.113.9", "10.1.1.1")
    assert addresses({"networks": {"v4": [], "v6": []}}) == (None, None)


def test_bad_deployment_name_is_refused():
    from wizard.providers.digitalocean import DigitalOceanProvider
    with pytest.raises(ProviderError):
        DigitalOceanProvider("Bad Name!", token="x", region="nyc3", image="debian-12-x64")


def test_for_plan_and_make_provider(do_double, do_token, operator_key, tmp_path, monkeypatch):
    """The engine's entry: make_provider(plan, token=getter); the token is asked on first use only."""
    from wizard.plan import Plan
    from wizard.providers import make_provider

    key = tmp_path / "id_ed25519"
    key.write_bytes(operator_key[0].export_private_key("openssh"))
    key.with_name("id_ed25519.pub").write_text(operator_key[1] + "\n")
    plan = Plan(name="planned", ssh_key=str(key), region="ams3", image="debian-12-x64", backups="weekly",
                domain="chat.example.test", admin_email="ops@example.test")
    asked = []

    def getter():
        asked.append(1)
        return do_token

    p = make_provider(plan, token=getter)
    assert (p.deployment, p.region, p.image, p.backups, p.tag) == ("planned", "ams3", "debian-12-x64", "weekly",
                                                                    "rw-planned")
    assert asked == []                              # building it asks nothing
    p.poll_interval = 0.1
    specs = [HostSpec("mongo1", "mongo", "s-1vcpu-2gb", "#cloud-config\n{}\n")]
    m = p.ensure_hosts(specs, on_resource=_quiet, progress=_quiet)[0]
    assert asked == [1] and m.name == "mongo1"
    body = do_double.requests("POST", r"^/v2/droplets/?$")[0].json()
    assert body["region"] == "ams3" and body["backup_policy"] == {"plan": "weekly", "hour": 4, "weekday": "SUN"}
    assert do_double.ssh_keys[body["ssh_keys"][0]]["public_key"] == operator_key[1]


def test_wrong_end_point_is_a_one_line_error(do_token):
    from tests.doubles.digitalocean import DigitalOceanDouble
    from wizard.providers.digitalocean import NotFound

    with DigitalOceanDouble(token=do_token) as double:    # not do_double: /v9 is outside the spec on purpose
        with pytest.raises(NotFound) as e:
            DigitalOceanClient(do_token, end_point=double.base_url + "/v9/").account()
        assert "\n" not in str(e.value) and "DIGITALOCEAN_END_POINT" in str(e.value)
        assert DigitalOceanClient(do_token, end_point=double.end_point).droplet(123) is None


def test_a_droplet_switched_off_is_powered_on(make_provider, do_double, production_specs):
    p = make_provider()
    machines = p.ensure_hosts(production_specs, on_resource=_quiet, progress=_quiet)
    do_double.power_off(int(machines[1].id))
    assert do_double.droplets[int(machines[1].id)]["status"] == "off"
    notes = []
    again = make_provider().ensure_hosts(production_specs, on_resource=_quiet, progress=notes.append)
    assert [m.status for m in again] == ["active"] * 4 and do_double.create_calls() == 4
    assert "mongo2: droplet is off; powering it on" in notes
    assert [e.json() for e in do_double.requests("POST", r"/v2/droplets/\d+/actions")] == [{"type": "power_on"}]
