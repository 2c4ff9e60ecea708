"""Every shape the double serves, and every request the wizard sends, against the OpenAPI document.

The `do_double` fixture already validates all exchanges of every test in this
folder at teardown; this file drives the endpoints the provider itself does not
use (multiple create, delete by tag, actions, the control endpoint) and proves
the check can fail.
"""

from __future__ import annotations

import json
import time

import requests

from tests.doubles.digitalocean import Exchange
from tests.doubles.do_openapi import check_exchange, check_exchanges, spec_path


def _api(double, token):
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return lambda method, path, **kw: s.request(method, double.end_point + path, timeout=10, **kw)


def test_spec_is_found_beside_the_repo_or_in_work_shared():
    path = spec_path()
    assert path is not None and path.name == "DigitalOcean-public.v2.bundled.yaml"


def test_every_endpoint_of_the_double_validates(do_double, do_token, operator_key):
    api = _api(do_double, do_token)
    assert api("GET", "account").status_code == 200
    key = api("POST", "account/keys", json={"name": "k", "public_key": operator_key[1]}).json()["ssh_key"]
    assert api("POST", "account/keys", json={"name": "k", "public_key": operator_key[1]}).status_code == 422
    assert api("GET", "account/keys").status_code == 200
    for path in ("sizes", "regions", "images?type=distribution", "vpcs", "domains"):
        assert api("GET", path).status_code == 200, path
    vpc = api("POST", "vpcs", json={"name": "rw-x-nyc3", "region": "nyc3"}).json()["vpc"]
    body = {"names": ["x-a", "x-b", "x-c"], "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
            "ssh_keys": [key["fingerprint"]], "tags": ["rw-x"], "vpc_uuid": vpc["id"], "user_data": "#cloud-config\n"}
    r = api("POST", "droplets", json=body)
    assert r.status_code == 202 and len(r.json()["droplets"]) == 3
    action_id = r.json()["links"]["actions"][0]["id"]
    first = r.json()["droplets"][0]["id"]
    deadline = time.monotonic() + 10
    while api("GET", f"droplets/{first}").json()["droplet"]["status"] != "active":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api("GET", f"actions/{action_id}").json()["action"]["status"] == "completed"
    assert api("GET", f"droplets/{first}/actions").json()["actions"][0]["type"] == "create"
    assert len(api("GET", "droplets?tag_name=rw-x&per_page=2").json()["droplets"]) == 2
    assert api("GET", "droplets?tag_name=rw-x&per_page=2&page=2").json()["links"]["pages"]["prev"]
    assert api("POST", "droplets", json={**body, "names": ["x-d"], "size": "nope"}).status_code == 422
    assert api("POST", "droplets", json={**body, "names": ["x-d"], "region": "mars1"}).status_code == 422
    assert api("DELETE", f"droplets/{first}").status_code == 204
    assert api("GET", f"droplets/{first}").status_code == 404
    assert api("DELETE", "droplets?tag_name=rw-x").status_code == 204
    assert api("GET", "droplets?tag_name=rw-x").json()["meta"]["total"] == 0
    rec = api("POST", "domains/example.test/records", json={"type": "A", "name": "chat", "data": "198.18.32.9"})
    assert rec.status_code == 201
    assert api("GET", "domains/example.test/records?type=A&name=chat.example.test").json()["meta"]["total"] == 1
    # Faults over HTTP (the control endpoint is not part of the API and is not recorded).
    ctl = requests.post(do_double.base_url + "/_double/faults",
                        json={"path": "^/v2/sizes$", "status": 429, "retry_after": 1, "count": 1}, timeout=5)
    assert ctl.status_code == 201
    r = api("GET", "sizes")
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["id"] == "too_many_requests"
    assert api("GET", "sizes").status_code == 200
    wrong = requests.get(do_double.end_point + "account", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {**wrong.json(), "id": "unauthorized",
                                                         "message": "Unable to authenticate you."}
    assert all(int(e.response_headers["ratelimit-remaining"]) >= 0 for e in do_double.exchanges)
    assert check_exchanges(do_double.exchanges) == []
    assert not any(e.path.startswith("/_double") for e in do_double.exchanges)


def _exchange(method, path, status, response, body=None):
    return Exchange(method=method, path=path, query={}, headers={"authorization": "Bearer x",
                                                                 "content-type": "application/json"},
                    body=json.dumps(body).encode() if body is not None else b"", status=status,
                    response_headers={"content-type": "application/json"},
                    response_body=json.dumps(response).encode())


def test_the_check_rejects_wrong_shapes():
    # A droplet list without `meta`, a droplet with a string id, a create body with a null vpc_uuid
    # (what python-digitalocean's own Droplet.create sends, hence the provider's clean bodies).
    assert check_exchange(_exchange("GET", "/v2/droplets", 200, {"droplets": []}))
    assert check_exchange(_exchange("GET", "/v2/droplets/1", 200, {"droplet": {"id": "1"}}))
    bad_request = _exchange("POST", "/v2/droplets", 202, {}, body={"name": "a", "size": "s", "image": "i",
                                                                   "vpc_uuid": None})
    assert any(p.startswith("request") for p in check_exchange(bad_request))
    assert check_exchange(_exchange("GET", "/v2/account", 200, {"account": {"email": "x"}}))
