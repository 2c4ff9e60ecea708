"""A DigitalOcean API v2 double: a local HTTP server for everything the wizard calls.

Test code, not product code. Shapes follow DigitalOcean's OpenAPI document
(tests/digitalocean/test_do_openapi.py validates every exchange). Two modes:

* without a lab: droplets go ``new`` -> ``active`` after ``active_delay`` seconds
  with made-up addresses in the given lab subnet (nothing listens there);
* with a lab (``wizard.lab.lab.Lab``): creating a droplet boots a lab host of that
  name in a background thread, seeded with the request's user data and the
  account SSH keys as NoCloud ``public-keys`` (how DigitalOcean delivers
  ``ssh_keys``); the droplet turns ``active`` with the host's addresses once booted.

Faults on demand, in process (``double.add_fault(...)``) or over HTTP
(``POST /_double/faults``): a status (429 with ``retry-after``, 500, ...) for the
next ``count`` matching requests, slow answers (``delay``, before or after the
work is done), droplets that never become active (``never_active``).

Run alone: ``python -m tests.doubles.digitalocean --port 0 --token T`` prints the
endpoint (for ``DIGITALOCEAN_END_POINT``) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import itertools
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

SIZES = [
    # slug, memory MB, vcpus, disk GB, transfer TB, price_monthly
    ("s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4.0),
    ("s-1vcpu-1gb", 1024, 1, 25, 1.0, 6.0),
    ("s-1vcpu-2gb", 2048, 1, 50, 2.0, 12.0),
    ("s-2vcpu-2gb", 2048, 2, 60, 3.0, 18.0),
    ("s-2vcpu-4gb", 4096, 2, 80, 4.0, 24.0),
    ("s-4vcpu-8gb", 8192, 4, 160, 5.0, 48.0),
    ("s-8vcpu-16gb", 16384, 8, 320, 6.0, 96.0),
]
REGIONS = [
    ("nyc1", "New York 1"), ("nyc3", "New York 3"), ("sfo3", "San Francisco 3"),
    ("ams3", "Amsterdam 3"), ("fra1", "Frankfurt 1"), ("lon1", "London 1"),
    ("sgp1", "Singapore 1"), ("tor1", "Toronto 1"), ("blr1", "Bangalore 1"), ("syd1", "Sydney 1"),
]
IMAGES = [
    # id, slug, name, distribution
    (150000001, "debian-12-x64", "12 x64", "Debian"),
    (150000002, "ubuntu-24-04-x64", "24.04 (LTS) x64", "Ubuntu"),
    (150000003, "ubuntu-22-04-x64", "22.04 (LTS) x64", "Ubuntu"),
]
NAME_RE = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_\-:]+$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fingerprint(public_key: str) -> str:
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


class ApiFailure(Exception):
    def __init__(self, status: int, error_id: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.error_id, self.message, self.headers = status, error_id, message, headers or {}


@dataclass
class Fault:
    """Applies to the next ``count`` requests matching method and path (a regex search)."""

    path: str = ""
    method: str = ""
    status: int | None = None          # answer this status instead of doing the work
    retry_after: float | None = None   # with 429: the retry-after header
    delay: float = 0.0                 # slow answer: sleep this long
    delay_after: bool = False          # sleep after doing the work (the answer is late, the effect real)
    count: int = 1                     # -1: forever
    message: str = ""

    def matches(self, method: str, path: str) -> bool:
        return (not self.method or self.method.upper() == method) and re.search(self.path, path) is not None


@dataclass
class Exchange:
    """One request and the answer served (for OpenAPI validation and assertions)."""

    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    status: int = 0
    response_headers: dict = field(default_factory=dict)
    response_body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def response_json(self) -> Any:
        return json.loads(self.response_body) if self.response_body else None


class DigitalOceanDouble:
    """The fake API. ``start()``, then point ``DIGITALOCEAN_END_POINT`` at ``end_point``."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        lab: Any = None,
        lab_subnet: str = "198.18.32.0/23",
        active_delay: float = 0.5,
        max_per_page: int = 200,
        droplet_limit: int = 25,
        domains: list[str] | None = None,
        never_active: list[str] | None = None,
    ) -> None:
        self.token = token
        self.lab = lab
        self.active_delay = active_delay
        self.max_per_page = max_per_page
        self.droplet_limit = droplet_limit
        self.never_active = set(never_active or [])
        net = ipaddress.ip_network(lab_subnet)
        halves = list(net.subnets(prefixlen_diff=1))
        self.public_net, self.private_net = halves[0], halves[1]
        self._public_ips = (str(ip) for ip in itertools.islice(self.public_net.hosts(), 100, None))
        self._private_ips = (str(ip) for ip in itertools.islice(self.private_net.hosts(), 100, None))
        self.lock = threading.RLock()
        self.exchanges: list[Exchange] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []           # lab boot failures etc.
        self.lab_hosts: dict[int, Any] = {}   # droplet id -> LabHost
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(300000001)
        self._action_ids = itertools.count(2000000001)
        self._key_ids = itertools.count(41000001)
        self._record_ids = itertools.count(900001)
        self.account = {
            "droplet_limit": droplet_limit, "floating_ip_limit": 3, "email": "ops@example.test",
            "name": "Lab Operator", "uuid": str(uuid.uuid4()).replace("-", ""), "email_verified": True,
            "status": "active", "status_message": "",
        }
        self.ssh_keys: dict[int, dict] = {}
        self.vpcs: dict[str, dict] = {}
        self.droplets: dict[int, dict] = {}
        self.user_data: dict[int, str] = {}
        self.actions: dict[int, dict] = {}
        self.domains: dict[str, list[dict]] = {d: [] for d in (domains or [])}
        self.ratelimit = 5000
        self.ratelimit_remaining = 5000
        for slug, _ in REGIONS[:3]:     # an account that has used these regions has default VPCs
            self._add_vpc(f"default-{slug}", slug, default=True, ip_range="10.108.0.0/20")
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.host, self.port = host, port

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DigitalOceanDouble":
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(target=self._server.serve_forever, name="do-double", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self, *, destroy_lab_hosts: bool = True) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.wait_idle()
        if destroy_lab_hosts and self.lab is not None:
            for droplet_id, host in list(self.lab_hosts.items()):
                self._lab_destroy(droplet_id)

    def __enter__(self) -> "DigitalOceanDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def end_point(self) -> str:
        """For DIGITALOCEAN_END_POINT (python-digitalocean wants the trailing /v2/)."""
        return self.base_url + "/v2/"

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Wait for background boots and deletions to finish."""
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ test helpers
    def add_fault(self, **kwargs) -> Fault:
        f = Fault(**kwargs)
        with self.lock:
            self.faults.append(f)
        return f

    def requests(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges
                    if (method is None or e.method == method) and (path is None or re.search(path, e.path))]

    def create_calls(self) -> int:
        return len(self.requests("POST", r"^/v2/droplets/?$"))

    def droplets_tagged(self, tag: str) -> list[dict]:
        with self.lock:
            return [d for d in self.droplets.values() if tag in d["tags"]]

    # ------------------------------------------------------------------ objects
    def _region(self, slug: str) -> dict:
        name = dict(REGIONS)[slug]
        return {"name": name, "slug": slug, "available": True,
                "features": ["backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"],
                "sizes": [s[0] for s in SIZES]}

    def _size(self, slug: str) -> dict:
        for s, mem, cpu, disk, transfer, price in SIZES:
            if s == slug:
                return {"slug": s, "memory": mem, "vcpus": cpu, "disk": disk, "transfer": transfer,
                        "price_monthly": price, "price_hourly": round(price / 672, 5),
                        "regions": [r for r, _ in REGIONS], "available": True,
                        "description": "Basic",
                        "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}]}
        raise KeyError(slug)

    def _image(self, key: str | int) -> dict:
        for i, slug, name, dist in IMAGES:
            if key in (i, slug, str(i)):
                return {"id": i, "name": name, "distribution": dist, "slug": slug, "public": True,
                        "regions": [r for r, _ in REGIONS], "created_at": "2026-06-10T12:00:00Z",
                        "type": "base", "min_disk_size": 10, "size_gigabytes": 1.6,
                        "description": f"{dist} {name}", "tags": [], "status": "available",
                        "error_message": ""}
        raise KeyError(key)

    def _add_vpc(self, name: str, region: str, *, default: bool = False, ip_range: str | None = None,
                 description: str = "") -> dict:
        vid = str(uuid.uuid4())
        vpc = {"id": vid, "urn": f"do:vpc:{vid}", "name": name, "description": description,
               "region": region, "ip_range": ip_range or str(self.private_net), "default": default,
               "created_at": _now()}
        self.vpcs[vid] = vpc
        return vpc

    def _action(self, droplet: dict, kind: str) -> dict:
        aid = next(self._action_ids)
        action = {"id": aid, "status": "in-progress", "type": kind, "started_at": _now(),
                  "completed_at": None, "resource_id": droplet["id"], "resource_type": "droplet",
                  "region": self._region(droplet["region"]["slug"]), "region_slug": droplet["region"]["slug"]}
        self.actions[aid] = action
        droplet.setdefault("_actions", []).append(aid)
        return action

    def _public(self, droplet: dict) -> dict:
        return {k: v for k, v in droplet.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, query: dict, body: Any, headers: dict) -> tuple[int, dict | None, dict]:
        """Returns (status, json body or None, extra headers). Raises ApiFailure."""
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.token}":
            raise ApiFailure(401, "unauthorized", "Unable to authenticate you.")
        p = path.rstrip("/") or "/"
        for pattern, verb, fn in self._routes():
            m = re.fullmatch(pattern, p)
            if m and verb == method:
                return fn(query, body, *m.groups())
        raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")

    def _routes(self):
        return [
            (r"/v2/account", "GET", self._get_account),
            (r"/v2/account/keys", "GET", self._list_keys),
            (r"/v2/account/keys", "POST", self._create_key),
            (r"/v2/sizes", "GET", lambda q, b: self._page(q, "sizes", [self._size(s[0]) for s in SIZES])),
            (r"/v2/regions", "GET", lambda q, b: self._page(q, "regions", [self._region(r) for r, _ in REGIONS])),
            (r"/v2/images", "GET", self._list_images),
            (r"/v2/vpcs", "GET", lambda q, b: self._page(q, "vpcs", list(self.vpcs.values()))),
            (r"/v2/vpcs", "POST", self._create_vpc),
            (r"/v2/droplets", "GET", self._list_droplets),
            (r"/v2/droplets", "POST", self._create_droplets),
            (r"/v2/droplets", "DELETE", self._delete_by_tag),
            (r"/v2/droplets/(\d+)", "GET", self._get_droplet),
            (r"/v2/droplets/(\d+)", "DELETE", self._delete_droplet),
            (r"/v2/droplets/(\d+)/actions", "GET", self._droplet_actions),
            (r"/v2/droplets/(\d+)/actions", "POST", self._droplet_action),
            (r"/v2/actions/(\d+)", "GET", self._get_action),
            (r"/v2/domains", "GET", self._list_domains),
            (r"/v2/domains/([^/]+)/records", "GET", self._list_records),
            (r"/v2/domains/([^/]+)/records", "POST", self._create_record),
            (r"/v2/domains/([^/]+)/records/(\d+)", "PUT", self._update_record),
        ]

    def _page(self, query: dict, key: str, items: list, extra: dict | None = None) -> tuple[int, dict, dict]:
        per_page = max(1, min(int(query.get("per_page", ["20"])[0]), self.max_per_page))
        page = max(1, int(query.get("page", ["1"])[0]))
        total = len(items)
        last = max(1, -(-total // per_page))
        body: dict[str, Any] = {key: items[(page - 1) * per_page: page * per_page]}
        pages: dict[str, str] = {}

        def url(n: int) -> str:
            q = {k: v[0] for k, v in query.items() if k not in ("page", "per_page")}
            q.update(page=n, per_page=per_page)
            return f"{self.base_url}{self._current_path}?{urlencode(q)}"

        if page > 1:
            pages["first"], pages["prev"] = url(1), url(page - 1)
        if page < last:
            pages["next"], pages["last"] = url(page + 1), url(last)
        body["links"] = {"pages": pages} if pages else {}
        body["meta"] = {"total": total}
        if extra:
            body.update(extra)
        return 200, body, {}

    # ------------------------------------------------------------------ handlers
    def _get_account(self, q, b):
        return 200, {"account": self.account}, {}

    def _list_keys(self, q, b):
        return self._page(q, "ssh_keys", list(self.ssh_keys.values()))

    def _create_key(self, q, body):
        body = body or {}
        name, pub = body.get("name"), (body.get("public_key") or "").strip()
        if not name or not pub:
            raise ApiFailure(422, "unprocessable_entity", "Name and public key are required.")
        try:
            fp = _fingerprint(pub)
        except Exception:
            raise ApiFailure(422, "unprocessable_entity", "Key invalid type, we support 'ssh-rsa', 'ssh-ed25519' and 'ecdsa-sha2-nistp256'.")
        if any(k["fingerprint"] == fp for k in self.ssh_keys.values()):
            raise ApiFailure(422, "unprocessable_entity", "SSH Key is already in use on your account")
        key = {"id": next(self._key_ids), "fingerprint": fp, "public_key": pub, "name": name}
        self.ssh_keys[key["id"]] = key
        return 201, {"ssh_key": key}, {}

    def _list_images(self, q, b):
        images = [self._image(i[0]) for i in IMAGES]
        kind = q.get("type", [""])[0]
        if kind and kind != "distribution":
            images = []
        if q.get("private", [""])[0] == "true":
            images = []
        return self._page(q, "images", images)

    def _create_vpc(self, q, body):
        body = body or {}
        name, region = body.get("name"), body.get("region")
        if not name or not re.fullmatch(r"[a-zA-Z0-9\-.]+", name):
            raise ApiFailure(422, "unprocessable_entity", "name is invalid")
        if region not in dict(REGIONS):
            raise ApiFailure(422, "unprocessable_entity", "region is invalid")
        if any(v["name"] == name for v in self.vpcs.values()):
            raise ApiFailure(422, "unprocessable_entity", "A VPC with this name already exists")
        vpc = self._add_vpc(name, region, ip_range=body.get("ip_range"), description=body.get("description", ""))
        return 201, {"vpc": vpc}, {}

    def _list_droplets(self, q, b):
        items = sorted(self.droplets.values(), key=lambda d: d["id"])
        tag = q.get("tag_name", [None])[0]
        name = q.get("name", [None])[0]
        if tag:
            items = [d for d in items if tag in d["tags"]]
        if name:
            items = [d for d in items if d["name"] == name]
        return self._page(q, "droplets", [self._public(d) for d in items])

    def _create_droplets(self, q, body):
        body = body or {}
        names = body.get("names") if "names" in body else [body.get("name")]
        if not isinstance(names, list) or not names or len(names) > 10:
            raise ApiFailure(422, "unprocessable_entity", "You must specify between 1 and 10 names.")
        for n in names:
            if not isinstance(n, str) or not NAME_RE.match(n) or len(n) > 255:
                raise ApiFailure(422, "unprocessable_entity", "Name is invalid.")
        region = body.get("region")
        if region not in dict(REGIONS):
            raise ApiFailure(422, "unprocessable_entity", "You specified an invalid region for Droplet creation.")
        try:
            size = self._size(body.get("size"))
        except KeyError:
            raise ApiFailure(422, "unprocessable_entity", "You specified an invalid size for Droplet creation.")
        try:
            image = self._image(body.get("image"))
        except KeyError:
            raise ApiFailure(422, "unprocessable_entity", "You specified an invalid image for Droplet creation.")
        keys = []
        for k in body.get("ssh_keys") or []:
            found = [x for x in self.ssh_keys.values() if k in (x["id"], x["fingerprint"], str(x["id"]))]
            if not found:
                raise ApiFailure(422, "unprocessable_entity", "You specified an invalid ssh key for Droplet creation.")
            keys.append(found[0])
        tags = body.get("tags") or []
        if any(not TAG_RE.match(t) for t in tags):
            raise ApiFailure(422, "unprocessable_entity", "Tag name is invalid.")
        user_data = body.get("user_data") or ""
        if len(user_data.encode()) > 64 * 1024:
            raise ApiFailure(422, "unprocessable_entity", "user_data is too large (64 KiB maximum).")
        vpc_uuid = body.get("vpc_uuid")
        if vpc_uuid is not None:
            vpc = self.vpcs.get(vpc_uuid)
            if vpc is None or vpc["region"] != region:
                raise ApiFailure(422, "unprocessable_entity", "You specified an invalid VPC for Droplet creation.")
        else:
            vpc = next((v for v in self.vpcs.values() if v["region"] == region and v["default"]), None)
            if vpc is None:
                vpc = self._add_vpc(f"default-{region}", region, default=True, ip_range="10.108.0.0/20")
        if len(self.droplets) + len(names) > self.droplet_limit:
            raise ApiFailure(422, "unprocessable_entity",
                             "creating this/these droplet(s) will exceed your droplet limit")
        features = ["monitoring"] * bool(body.get("monitoring")) + ["backups"] * bool(body.get("backups")) \
            + ["private_networking"]
        created, action_ids = [], []
        for n in names:
            did = next(self._ids)
            droplet = {
                "id": did, "name": n, "memory": size["memory"], "vcpus": size["vcpus"], "disk": size["disk"],
                "disk_info": size["disk_info"], "locked": False, "status": "new", "kernel": None,
                "created_at": _now(), "features": features, "backup_ids": [], "next_backup_window": None,
                "snapshot_ids": [], "image": image, "volume_ids": [], "size": size, "size_slug": size["slug"],
                "networks": {"v4": [], "v6": []}, "region": self._region(region), "tags": list(tags),
                "vpc_uuid": vpc["id"],
                "_ssh_keys": [k["public_key"] for k in keys],
            }
            self.droplets[did] = droplet
            self.user_data[did] = user_data
            action = self._action(droplet, "create")
            action_ids.append(action["id"])
            created.append(droplet)
            self._spawn(self._bring_up, did)
        links = {"actions": [{"id": a, "rel": "create", "href": f"{self.base_url}/v2/actions/{a}"} for a in action_ids]}
        if "names" in body:
            return 202, {"droplets": [self._public(d) for d in created], "links": links}, {}
        return 202, {"droplet": self._public(created[0]), "links": links}, {}

    def _get_droplet(self, q, b, did):
        d = self.droplets.get(int(did))
        if d is None:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"droplet": self._public(d)}, {}

    def _delete_droplet(self, q, b, did):
        d = self.droplets.pop(int(did), None)
        if d is None:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        self._spawn(self._lab_destroy, d["id"])
        return 204, None, {"content-type": "application/json"}

    def _delete_by_tag(self, q, b):
        tag = q.get("tag_name", [None])[0]
        if not tag:
            raise ApiFailure(422, "unprocessable_entity", "tag_name is required")
        for d in [d for d in self.droplets.values() if tag in d["tags"]]:
            self.droplets.pop(d["id"], None)
            self._spawn(self._lab_destroy, d["id"])
        return 204, None, {"content-type": "application/json"}

    def _droplet_actions(self, q, b, did):
        d = self.droplets.get(int(did))
        if d is None:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        return self._page(q, "actions", [self.actions[a] for a in d.get("_actions", [])])

    def _droplet_action(self, q, body, did):
        d = self.droplets.get(int(did))
        if d is None:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        kind = (body or {}).get("type")
        if kind not in ("power_on", "power_off", "shutdown", "reboot"):
            raise ApiFailure(422, "unprocessable_entity", f"action {kind!r} is not supported by the double")
        if d["status"] == "new":
            raise ApiFailure(422, "unprocessable_entity", "Droplet already has a pending event.")
        action = self._action(d, kind)
        self._spawn(self._power, d["id"], kind, action["id"])
        return 201, {"action": action}, {}

    def power_off(self, droplet_id: int) -> None:
        """Test helper: the operator switched a droplet off in the console."""
        with self.lock:
            d = self.droplets[droplet_id]
            action = self._action(d, "power_off")
        self._power(droplet_id, "power_off", action["id"])

    def _power(self, did: int, kind: str, action_id: int) -> None:
        with self.lock:
            d = self.droplets.get(did)
            host = self.lab_hosts.get(did)
        if d is None:
            return
        try:
            if self.lab is not None and host is not None:
                if kind in ("power_off", "shutdown", "reboot"):
                    self.lab.stop_host(host.name)
                if kind in ("power_on", "reboot"):
                    self.lab.start_host(host.name)
            else:
                time.sleep(self.active_delay if kind in ("power_on", "reboot") else 0.05)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{d['name']}: lab {kind} failed: {exc}")
                self.actions[action_id]["status"] = "errored"
            return
        with self.lock:
            d["status"] = "off" if kind in ("power_off", "shutdown") else "active"
            self.actions[action_id]["status"], self.actions[action_id]["completed_at"] = "completed", _now()

    def _get_action(self, q, b, aid):
        a = self.actions.get(int(aid))
        if a is None:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        return 200, {"action": a}, {}

    def _list_domains(self, q, b):
        return self._page(q, "domains", [{"name": n, "ttl": 1800, "zone_file": ""} for n in self.domains])

    def _records(self, domain: str) -> list[dict]:
        if domain not in self.domains:
            raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")
        return self.domains[domain]

    def _list_records(self, q, b, domain):
        records = self._records(domain)
        kind, name = q.get("type", [None])[0], q.get("name", [None])[0]
        out = []
        for r in records:
            fqdn = domain if r["name"] == "@" else f"{r['name']}.{domain}"
            if (kind is None or r["type"] == kind) and (name is None or fqdn == name):
                out.append(r)
        return self._page(q, "domain_records", out)

    def _create_record(self, q, body, domain):
        records = self._records(domain)
        body = body or {}
        if body.get("type") != "A" or not body.get("name") or not body.get("data"):
            raise ApiFailure(422, "unprocessable_entity", "Only A records with name and data are supported here.")
        try:
            ipaddress.IPv4Address(body["data"])
        except ValueError:
            raise ApiFailure(422, "unprocessable_entity", "Data needs to be an IPv4 address.")
        rec = {"id": next(self._record_ids), "type": "A", "name": body["name"], "data": body["data"],
               "priority": None, "port": None, "ttl": int(body.get("ttl") or 1800), "weight": None,
               "flags": None, "tag": None}
        records.append(rec)
        return 201, {"domain_record": rec}, {}

    def _update_record(self, q, body, domain, rid):
        for r in self._records(domain):
            if r["id"] == int(rid):
                for k in ("name", "data", "ttl"):
                    if body and k in body:
                        r[k] = body[k]
                return 200, {"domain_record": r}, {}
        raise ApiFailure(404, "not_found", "The resource you were accessing could not be found.")

    # ------------------------------------------------------------------ life of a droplet
    def _spawn(self, fn: Callable, *args) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self.lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _bring_up(self, did: int) -> None:
        with self.lock:
            d = self.droplets.get(did)
            if d is None:
                return
            name, keys, user_data = d["name"], d["_ssh_keys"], self.user_data.get(did, "")
        if name in self.never_active:
            return
        public = private = None
        if self.lab is None:
            time.sleep(self.active_delay)
            with self.lock:
                public, private = next(self._public_ips), next(self._private_ips)
        else:
            # Addresses may appear while booting on DigitalOcean; here the lab decides them.
            meta = {"instance-id": f"i-{did}", "local-hostname": name, "public-keys": list(keys)}
            try:
                host = self.lab.boot_host(name, user_data=user_data, meta_data=meta)
            except Exception as exc:   # a droplet that never becomes active, as on a bad day
                with self.lock:
                    self.errors.append(f"{name}: lab boot failed: {exc}")
                return
            with self.lock:
                self.lab_hosts[did] = host
            public, private = host.public_ip, host.private_ip
        with self.lock:
            d = self.droplets.get(did)
            if d is None:       # deleted while booting
                if self.lab is not None:
                    self._spawn(self._lab_destroy, did)
                return
            d["networks"] = {
                "v4": [
                    {"ip_address": private, "netmask": str(self.private_net.netmask),
                     "gateway": "", "type": "private"},
                    {"ip_address": public, "netmask": str(self.public_net.netmask),
                     "gateway": str(next(self.public_net.hosts())), "type": "public"},
                ],
                "v6": [],
            }
            d["status"] = "active"
            for aid in d.get("_actions", []):
                a = self.actions[aid]
                if a["type"] == "create":
                    a["status"], a["completed_at"] = "completed", _now()

    def _lab_destroy(self, did: int) -> None:
        with self.lock:
            host = self.lab_hosts.pop(did, None)
        if host is not None and self.lab is not None:
            try:
                self.lab.destroy_host(host.name)
            except Exception as exc:
                with self.lock:
                    self.errors.append(f"{host.name}: lab destroy failed: {exc}")

    # ------------------------------------------------------------------ faults and control
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.count != 0 and f.matches(method, path):
                    if f.count > 0:
                        f.count -= 1
                    return f
        return None

    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """``/_double/...``: faults, never-active names, counters, reset (no auth, not recorded)."""
        if path == "/_double/faults" and method == "POST":
            f = self.add_fault(**(body or {}))
            return 201, {"fault": f.__dict__}
        if path == "/_double/faults" and method == "DELETE":
            with self.lock:
                self.faults.clear()
            return 200, {}
        if path == "/_double/never-active" and method == "POST":
            self.never_active.update((body or {}).get("names", []))
            return 200, {"never_active": sorted(self.never_active)}
        if path == "/_double/stats" and method == "GET":
            with self.lock:
                return 200, {"creates": self.create_calls(), "droplets": len(self.droplets),
                             "requests": len(self.exchanges), "errors": list(self.errors)}
        return 404, {"id": "not_found", "message": "no such control endpoint"}


class _Handler(BaseHTTPRequestHandler):
    double: DigitalOceanDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):   # quiet: tests read double.exchanges instead
        pass

    def setup(self):
        super().setup()
        # Headers and body leave in two writes: without this, Nagle + delayed ACK add 40 ms a call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    @staticmethod
    def _prepare(payload: Any, headers: dict) -> tuple[bytes, dict]:
        raw = b"" if payload is None else json.dumps(payload).encode()
        out = {"content-type": "application/json; charset=utf-8"} if payload is not None else {}
        out.update(headers)
        return raw, out

    def _send(self, status: int, raw: bytes, headers: dict) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    def _serve(self, method: str) -> None:
        d = self.double
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if path.startswith("/_double/"):
            status, payload = d.control(method, path, body)
            self._send(status, *self._prepare(payload, {}))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        ex = Exchange(method=method, path=path, query=query,
                      headers={k: ("Bearer <redacted>" if k == "authorization" else v) for k, v in headers.items()},
                      body=raw)
        with d.lock:
            d.exchanges.append(ex)
            d.ratelimit_remaining = max(0, d.ratelimit_remaining - 1)
            rate = {"ratelimit-limit": d.ratelimit, "ratelimit-remaining": d.ratelimit_remaining,
                    "ratelimit-reset": int(time.time()) + 3600}
        fault = d._take_fault(method, path)
        if fault and fault.delay and not fault.delay_after:
            time.sleep(fault.delay)
        try:
            if fault and fault.status:
                extra = {}
                if fault.retry_after is not None:
                    extra["retry-after"] = int(fault.retry_after) if float(fault.retry_after).is_integer() else fault.retry_after
                ids = {429: "too_many_requests", 500: "server_error", 503: "service_unavailable",
                       422: "unprocessable_entity", 401: "unauthorized", 403: "forbidden"}
                messages = {429: "API Rate limit exceeded.", 500: "Server Error",
                            403: "You do not have access for the attempted action."}
                raise ApiFailure(fault.status, ids.get(fault.status, "error"),
                                 fault.message or messages.get(fault.status, "injected fault"), extra)
            with d.lock:
                d._current_path = path.rstrip("/")
                status, payload, extra = d.handle(method, path, query, body, headers)
        except ApiFailure as exc:
            status, payload, extra = exc.status, {"id": exc.error_id, "message": exc.message,
                                                  "request_id": str(uuid.uuid4())}, exc.headers
        except Exception as exc:   # a bug in the double shows up as a 500 with its text
            status, payload, extra = 500, {"id": "server_error", "message": f"double: {exc!r}"}, {}
        if fault and fault.delay and fault.delay_after:
            time.sleep(fault.delay)
        rate.update(extra)
        raw_out, headers_out = self._prepare(payload, rate)
        ex.response_body, ex.response_headers, ex.status = raw_out, headers_out, status
        try:
            self._send(status, raw_out, headers_out)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the client went away (killed, timed out): the work above still happened


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", default="test-token")
    ap.add_argument("--lab-prefix", default=None, help="boot lab hosts with this prefix (needs root)")
    ap.add_argument("--lab-subnet", default="198.18.32.0/23")
    ap.add_argument("--active-delay", type=float, default=2.0)
    ap.add_argument("--domain", action="append", default=[])
    args = ap.parse_args(argv)
    lab = None
    if args.lab_prefix:
        from wizard.lab.lab import Lab
        lab = Lab(prefix=args.lab_prefix, subnet=args.lab_subnet)
        lab.up()
    double = DigitalOceanDouble(token=args.token, host=args.host, port=args.port, lab=lab,
                                lab_subnet=args.lab_subnet, active_delay=args.active_delay,
                                domains=args.domain).start()
    print(f"DIGITALOCEAN_END_POINT={double.end_point}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()
        if lab is not None:
            lab.down()


if __name__ == "__main__":
    main()
