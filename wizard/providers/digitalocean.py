"""DigitalOcean provider over python-digitalocean.

python-digitalocean (1.17) gives the object model, pagination and the endpoint
convention (``DIGITALOCEAN_END_POINT``), but it hides HTTP status codes, never
retries, sends ``null`` for unset create fields and logs request bodies at DEBUG
(a droplet's user data holds its host private key). So every library object used
here is wired to :class:`Transport` through a small mixin that replaces the
library's one private request method: the library still builds URLs, paginates
and parses; the transport adds the token, timeouts, retries (429 honours
``retry-after``; 5xx and timeouts back off), one-line errors for 401/403/422,
and logs that carry neither the token nor any body.

Duplicates are the failure that costs money. Droplet names are not unique at
DigitalOcean, and a process can die between a create call and the state write,
so the deployment tag is the guard: ``ensure_hosts`` lists droplets by tag before
creating, and after an ambiguous create failure (5xx, timeout) it looks again by
tag before trying once more.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import digitalocean
import requests
from digitalocean.baseapi import DELETE, GET, POST, PUT, DataReadError, JSONReadError, NotFoundError

from wizard.providers.base import HostSpec, Machine, ProgressCallback, ProviderError, ResourceCallback
from wizard.token import Token, redact

log = logging.getLogger(__name__)

DEFAULT_END_POINT = "https://api.digitalocean.com/v2/"
END_POINT_ENV = "DIGITALOCEAN_END_POINT"
PRODUCT_TAG = "rocket-wizard"

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
BACKUPS = ("none", "weekly", "daily")


# --------------------------------------------------------------------------- errors

class ApiError(ProviderError):
    """DigitalOcean answered with an error; ``str()`` is one line without the token."""

    def __init__(self, message: str, *, status: int | None = None, error_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_id = error_id


class AuthError(ApiError):
    """401/403: the token is wrong, expired or lacks a scope."""


class TransientError(ApiError):
    """5xx, 429 or a timeout that outlived the retry budget, or an ambiguous create."""


class NotFound(ApiError):
    """404: the droplet (or record) is not there (any more)."""


# --------------------------------------------------------------------------- transport

@dataclass
class RetryPolicy:
    """How long one API call may keep trying. All times in seconds."""

    budget: float = 180.0             # total time one call may spend waiting to retry
    base_delay: float = 1.0           # first backoff; doubles per attempt, with jitter
    max_delay: float = 20.0
    max_retry_after: float = 120.0    # a longer retry-after is an error, not a wait
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def end_point_from_env(env: dict | None = None) -> str:
    """The API base URL (ends in ``/v2/``): ``DIGITALOCEAN_END_POINT`` or the real one."""
    env = os.environ if env is None else env
    value = (env.get(END_POINT_ENV) or DEFAULT_END_POINT).strip()
    return value if value.endswith("/") else value + "/"


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after_seconds(resp: requests.Response, now: float) -> float | None:
    value = resp.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value).timestamp()
                return max(0.0, when - now)
            except (TypeError, ValueError):
                pass
    reset = resp.headers.get("ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return None


class Transport:
    """Sends the library's requests: auth, timeouts, retries, classification, quiet logs."""

    def __init__(
        self,
        token: Token | str | Callable[[], Token | str],
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A callable is asked on the first request only: `plan` needs no token.
        self._token_source = Token(token, "argument") if isinstance(token, str) else token
        self._token: Token | None = None
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._session = requests.Session()
        self._session.trust_env = False   # no netrc/proxy surprises; the endpoint is explicit
        self.ratelimit_remaining: int | None = None
        self.calls = 0

    def token(self) -> Token:
        if self._token is None:
            source = self._token_source
            value = source() if callable(source) and not isinstance(source, Token) else source
            if not isinstance(value, Token):
                value = Token(str(value or ""), "argument") if value else None
            if value is None:
                raise AuthError("no DigitalOcean token: set DIGITALOCEAN_ACCESS_TOKEN or run `doctl auth init`")
            self._token = value
        return self._token

    # Called by the mixin in place of BaseAPI.__perform_request.
    def perform(self, end_point: str, url: str, method: str = GET, params: dict | None = None) -> requests.Response:
        params = dict(params or {})
        full = urljoin(end_point, url)
        path = urlsplit(full).path
        what = f"{method} {path}"
        headers = {
            "Authorization": "Bearer " + self.token().reveal(),
            "Content-Type": "application/json",
            "User-Agent": f"rocket-wizard python-digitalocean/{digitalocean.__version__}",
        }
        kwargs: dict[str, Any] = {"headers": headers, "timeout": (self.policy.connect_timeout, self.policy.read_timeout)}
        if method == GET:
            kwargs["params"] = params
        elif params:
            kwargs["data"] = json.dumps(params)
        # POST is not idempotent: after a 5xx or a timeout the resource may exist.
        # The caller decides (it looks by tag); 429 is safe to retry (nothing happened).
        idempotent = method in (GET, PUT, DELETE)
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            t0 = self._clock()
            try:
                resp = self._session.request(method, full, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                kind = "timed out" if isinstance(exc, requests.Timeout) else "could not connect"
                log.debug("%s %s (attempt %d)", what, kind, attempt)
                if not idempotent:
                    raise TransientError(f"DigitalOcean API: {what} {kind}; it may or may not have happened") from None
                self._backoff(what, kind, attempt, started, None)
                continue
            elapsed = self._clock() - t0
            remaining = resp.headers.get("ratelimit-remaining")
            if remaining is not None and remaining.isdigit():
                self.ratelimit_remaining = int(remaining)
            log.debug("%s -> %d (%.2fs, ratelimit-remaining=%s)", what, resp.status_code, elapsed, remaining)
            status = resp.status_code
            if status == 429:
                wait = _retry_after_seconds(resp, time.time())
                self._backoff(what, "rate limited (429)", attempt, started, wait)
                continue
            if status >= 500:
                if not idempotent:
                    raise TransientError(
                        f"DigitalOcean API: {what} failed with {status}; it may or may not have happened",
                        status=status,
                    )
                self._backoff(what, f"server error ({status})", attempt, started, None)
                continue
            if status in (401, 403) or (400 <= status < 500 and status != 404):
                raise self._error(what, resp)
            return resp   # 2xx, and 404 (the library raises NotFoundError)

    def _backoff(self, what: str, why: str, attempt: int, started: float, wait: float | None) -> None:
        p = self.policy
        if wait is None:
            wait = min(p.max_delay, p.base_delay * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        elif wait > p.max_retry_after:
            raise TransientError(f"DigitalOcean API: {what} {why}; asked to wait {wait:.0f}s, giving up")
        if self._clock() - started + wait > p.budget:
            raise TransientError(f"DigitalOcean API: {what} {why}; still failing after {attempt} attempts")
        log.info("%s %s; retrying in %.1fs", what, why, wait)
        self._sleep(wait)

    def _error(self, what: str, resp: requests.Response) -> ApiError:
        status = resp.status_code
        error_id, message = None, ""
        try:
            body = resp.json()
            error_id, message = body.get("id"), body.get("message", "")
        except ValueError:
            message = resp.text[:200]
        message = redact(_one_line(message or resp.reason or ""), self._token)  # if DO ever echoes it
        detail = f"{status} {error_id}: {message}" if error_id else f"{status}: {message}"
        if status == 401:
            return AuthError(
                f"DigitalOcean refused the token ({detail}); check DIGITALOCEAN_ACCESS_TOKEN or doctl's config",
                status=status, error_id=error_id)
        if status == 403:
            return AuthError(
                f"the DigitalOcean token may not do {what} ({detail}); it needs read and write scopes",
                status=status, error_id=error_id)
        return ApiError(f"DigitalOcean rejected {what} ({detail})", status=status, error_id=error_id)


class _Wired:
    """Mixin: route a python-digitalocean object's HTTP through our Transport.

    BaseAPI calls ``self.__perform_request``, i.e. ``self._BaseAPI__perform_request``;
    defining that name here (first in the MRO) replaces it for get_data and pagination.
    """

    _transport: Transport

    def _BaseAPI__perform_request(self, url, type=GET, params=None):  # noqa: N802 (library's name)
        try:
            return self._transport.perform(self.end_point, url, type, params)
        except requests.RequestException as exc:   # a malformed endpoint URL and the like
            raise ApiError(f"DigitalOcean API: {type} {url}: {_one_line(exc)}") from None

    def get_data(self, url, *args, **kwargs):
        # The library's own exceptions become one-line ProviderErrors.
        try:
            return super().get_data(url, *args, **kwargs)
        except NotFoundError:
            raise NotFound(f"DigitalOcean API: {url} not found (is DIGITALOCEAN_END_POINT right?)",
                           status=404) from None
        except (DataReadError, JSONReadError) as exc:
            raise ApiError(f"DigitalOcean API: unexpected answer for {url}: {_one_line(exc)}") from None


class _Manager(_Wired, digitalocean.Manager):
    pass


class _Droplet(_Wired, digitalocean.Droplet):
    pass


class _Action(_Wired, digitalocean.Action):
    pass


# --------------------------------------------------------------------------- listings

@dataclass(frozen=True)
class Size:
    slug: str
    memory_mb: int
    vcpus: int
    disk_gb: int
    price_monthly: float
    price_hourly: float
    regions: tuple[str, ...]
    available: bool
    description: str = ""


@dataclass(frozen=True)
class Region:
    slug: str
    name: str
    available: bool
    sizes: tuple[str, ...]


@dataclass(frozen=True)
class Image:
    slug: str
    name: str
    distribution: str
    id: int
    regions: tuple[str, ...]


@dataclass(frozen=True)
class SshKey:
    id: int
    name: str
    fingerprint: str
    public_key: str


def ssh_fingerprint(public_key: str) -> str:
    """DigitalOcean's fingerprint of an OpenSSH public key: colon-separated MD5 of the blob."""
    parts = public_key.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        raise ProviderError("the SSH public key is not an OpenSSH public key line") from None
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, 32, 2))


def _key_blob(public_key: str) -> tuple[str, str]:
    parts = public_key.split()
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", public_key.strip())


class DigitalOceanClient:
    """The API calls the wizard makes, as plain values. Used by the provider and the plan screen."""

    def __init__(
        self,
        token: Token | str | Callable[[], Token | str],
        *,
        end_point: str | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = Transport(token, policy=policy, sleep=sleep, clock=clock)
        self.end_point = end_point or end_point_from_env()
        if not self.end_point.endswith("/"):
            self.end_point += "/"
        self._manager = self._wire(_Manager)

    def _wire(self, cls, **attrs):
        # token="" keeps the secret out of library objects: only the Transport holds it.
        return cls(token="", end_point=self.end_point, _transport=self.transport, **attrs)

    def get(self, url: str, params: dict | None = None) -> dict:
        return self._manager.get_data(url, type=GET, params=params)

    def post(self, url: str, body: dict) -> dict:
        return self._manager.get_data(url, type=POST, params=body)

    def put(self, url: str, body: dict) -> dict:
        return self._manager.get_data(url, type=PUT, params=body)

    def delete(self, url: str) -> bool:
        try:
            return bool(self._manager.get_data(url, type=DELETE))
        except NotFound:
            return False

    # --- account and catalogue (the plan screen uses these)
    def account(self) -> dict:
        return self.get("account")["account"]

    def sizes(self) -> list[Size]:
        out = []
        for s in self._manager.get_all_sizes():
            out.append(Size(
                slug=s.slug, memory_mb=int(s.memory), vcpus=int(s.vcpus), disk_gb=int(s.disk),
                price_monthly=float(s.price_monthly), price_hourly=float(s.price_hourly),
                regions=tuple(s.regions or ()), available=bool(s.available),
                description=getattr(s, "description", "") or ""))
        return out

    def regions(self) -> list[Region]:
        return [Region(slug=r.slug, name=r.name, available=bool(r.available), sizes=tuple(r.sizes or ()))
                for r in self._manager.get_all_regions()]

    def images(self) -> list[Image]:
        """Public distribution images that have a slug (e.g. ``debian-12-x64``)."""
        return [Image(slug=i.slug, name=i.name, distribution=i.distribution, id=int(i.id),
                      regions=tuple(i.regions or ()))
                for i in self._manager.get_distro_images() if i.slug]

    def prices(self) -> dict[str, float]:
        return {s.slug: s.price_monthly for s in self.sizes()}

    # --- ssh keys, vpcs, droplets
    def ssh_keys(self) -> list[SshKey]:
        return [SshKey(id=int(k.id), name=k.name, fingerprint=k.fingerprint, public_key=k.public_key)
                for k in self._manager.get_all_sshkeys()]

    def create_ssh_key(self, name: str, public_key: str) -> SshKey:
        k = self.post("account/keys", {"name": name, "public_key": public_key})["ssh_key"]
        return SshKey(id=int(k["id"]), name=k["name"], fingerprint=k["fingerprint"], public_key=k["public_key"])

    def vpcs(self) -> list[dict]:
        return self.get("vpcs")["vpcs"]

    def create_vpc(self, name: str, region: str, description: str = "") -> dict:
        body = {"name": name, "region": region}
        if description:
            body["description"] = description
        return self.post("vpcs", body)["vpc"]

    def droplets(self, tag: str) -> list[dict]:
        """Raw droplet objects carrying ``tag`` (every page)."""
        return [_droplet_dict(d) for d in self._manager.get_all_droplets(tag_name=tag)]

    def droplet(self, droplet_id: int | str) -> dict | None:
        d = self._wire(_Droplet, id=int(droplet_id))
        try:
            d.load()
        except NotFound:
            return None
        return _droplet_dict(d)

    def create_droplet(self, body: dict) -> tuple[dict, int | None]:
        """POST /v2/droplets with a clean body (no nulls); returns (droplet, action id)."""
        data = self.post("droplets", body)
        actions = (data.get("links") or {}).get("actions") or []
        return data["droplet"], (actions[0]["id"] if actions else None)

    def delete_droplet(self, droplet_id: int | str) -> bool:
        d = self._wire(_Droplet, id=int(droplet_id))
        try:
            d.destroy()
        except NotFound:
            return False
        return True

    def power_on(self, droplet_id: int | str) -> dict:
        return self._wire(_Droplet, id=int(droplet_id)).power_on()["action"]

    def action(self, action_id: int) -> dict:
        a = self._wire(_Action, id=int(action_id))
        a.load_directly()
        return {k: getattr(a, k, None) for k in ("id", "status", "type", "resource_id", "started_at", "completed_at")}

    # --- DNS (optional A records for the web host)
    def domains(self) -> list[str]:
        return [d["name"] for d in self.get("domains").get("domains", [])]

    def ensure_a_record(self, domain: str, name: str, ip: str, ttl: int = 300) -> dict | None:
        """Create or correct the A record ``name`` in ``domain``; None if DO does not host the domain."""
        if domain not in self.domains():
            return None
        fqdn = domain if name in ("", "@") else f"{name}.{domain}"
        records = self.get(f"domains/{domain}/records", {"type": "A", "name": fqdn}).get("domain_records", [])
        for r in records:
            if r.get("data") == ip:
                return r
        if records:
            return self.put(f"domains/{domain}/records/{records[0]['id']}",
                            {"type": "A", "name": name or "@", "data": ip, "ttl": ttl})["domain_record"]
        return self.post(f"domains/{domain}/records",
                         {"type": "A", "name": name or "@", "data": ip, "ttl": ttl})["domain_record"]


_DROPLET_FIELDS = ("id", "name", "status", "tags", "networks", "size_slug", "size", "region",
                   "vpc_uuid", "created_at", "image", "features", "locked")


def _droplet_dict(d) -> dict:
    return {k: getattr(d, k, None) for k in _DROPLET_FIELDS}


def addresses(droplet: dict) -> tuple[str | None, str | None]:
    """(public IPv4, private IPv4) from ``networks.v4`` by type."""
    public = private = None
    for net in ((droplet.get("networks") or {}).get("v4") or []):
        if net.get("type") == "public" and not public:
            public = net.get("ip_address")
        elif net.get("type") == "private" and not private:
            private = net.get("ip_address")
    return public, private


# --------------------------------------------------------------------------- provider

class DigitalOceanProvider:
    """Droplets for one deployment, found by the tag ``rw-<deployment>``."""

    def __init__(
        self,
        deployment: str,
        *,
        token: Token | str | Callable[[], Token | str],
        region: str,
        image: str,
        ssh_public_key: str | Callable[[], str] | None = None,
        ssh_keys: Iterable[int | str] = (),
        backups: str = "none",
        vpc: str = "deployment",            # "deployment": a VPC named after it | "default"
        monitoring: bool = True,
        end_point: str | None = None,
        policy: RetryPolicy | None = None,
        poll_interval: float = 3.0,
        active_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _NAME_RE.match(deployment or ""):
            raise ProviderError(
                f"deployment name {deployment!r}: use 1-40 lowercase letters, digits and dashes")
        if backups not in BACKUPS:
            raise ProviderError(f"backups must be one of {', '.join(BACKUPS)}, not {backups!r}")
        if vpc not in ("deployment", "default"):
            raise ProviderError(f"vpc must be 'deployment' or 'default', not {vpc!r}")
        self.deployment = deployment
        self.region = region
        self.image = image
        self._ssh_public_key = ssh_public_key
        self.extra_ssh_keys = list(ssh_keys)
        self.backups = backups
        self.vpc_mode = vpc
        self.monitoring = monitoring
        self.poll_interval = poll_interval
        self.active_timeout = active_timeout
        self._sleep = sleep
        self._clock = clock
        self.client = DigitalOceanClient(token, end_point=end_point, policy=policy, sleep=sleep, clock=clock)

    @classmethod
    def for_plan(cls, plan, token=None, **kw) -> "DigitalOceanProvider":
        """From a wizard.plan.Plan. ``token``: a Token, a string or a getter (asked lazily)."""
        if token is None:
            from wizard.token import token_getter
            token = token_getter(interactive=False)
        return cls(plan.name, token=token, region=plan.region, image=plan.image,
                   ssh_public_key=plan.public_key, backups=plan.backups, **kw)

    @property
    def ssh_public_key(self) -> str | None:
        key = self._ssh_public_key
        if callable(key):
            try:
                key = key()
            except OSError as exc:
                raise ProviderError(f"cannot read the operator's SSH public key: {exc}") from None
        return key.strip() if key else None

    # --- naming
    @property
    def tag(self) -> str:
        return f"rw-{self.deployment}"

    def droplet_name(self, host: str) -> str:
        return f"{self.deployment}-{host}"

    def tags_for(self, role: str) -> list[str]:
        return [PRODUCT_TAG, self.tag, f"rw-role-{role}"]

    def _host_of(self, droplet: dict) -> str:
        name = droplet.get("name") or ""
        prefix = self.deployment + "-"
        return name[len(prefix):] if name.startswith(prefix) else name

    # --- catalogue
    def prices(self) -> dict[str, float]:
        return self.client.prices()

    def sizes(self) -> list[Size]:
        return self.client.sizes()

    def regions(self) -> list[Region]:
        return self.client.regions()

    def images(self) -> list[Image]:
        return self.client.images()

    # --- DNS (the TLS step offers this when the domain is on DigitalOcean)
    def domains(self) -> list[str]:
        return self.client.domains()

    def ensure_a_record(self, zone: str, record: str, address: str, ttl: int = 300) -> dict | None:
        """A record ``record`` ("chat" or "@") in ``zone`` -> ``address``; None if DO does not host the zone."""
        return self.client.ensure_a_record(zone, record, address, ttl)

    # --- prerequisites
    def ensure_ssh_keys(self, on_resource: ResourceCallback | None = None) -> list[int | str]:
        """Account SSH key ids for the droplets; uploads the operator's key if the account lacks it."""
        ids: list[int | str] = list(self.extra_ssh_keys)
        public_key = self.ssh_public_key
        if not public_key:
            return ids
        wanted = _key_blob(public_key)
        fingerprint = ssh_fingerprint(public_key)

        def find() -> SshKey | None:
            for k in self.client.ssh_keys():
                if k.fingerprint == fingerprint or _key_blob(k.public_key) == wanted:
                    return k
            return None

        key = find()
        if key is None:
            try:
                key = self.client.create_ssh_key(f"rocket-wizard-{self.deployment}", public_key)
            except (TransientError, ApiError) as exc:
                # 422 "already in use" (a race, or a create whose answer was lost): adopt it.
                key = find()
                if key is None:
                    raise exc
        if on_resource:
            on_resource("ssh_key", str(key.id), {"name": key.name, "fingerprint": key.fingerprint})
        if key.id not in ids:
            ids.append(key.id)
        return ids

    def ensure_vpc(self, on_resource: ResourceCallback | None = None) -> str | None:
        """The VPC id to put droplets in (None: let DigitalOcean use the region's default)."""
        def find(pred) -> dict | None:
            for v in self.client.vpcs():
                if v.get("region") == self.region and pred(v):
                    return v
            return None

        if self.vpc_mode == "default":
            v = find(lambda v: v.get("default"))
            return v["id"] if v else None
        name = f"rw-{self.deployment}-{self.region}"
        v = find(lambda v: v.get("name") == name)
        if v is None:
            try:
                v = self.client.create_vpc(name, self.region, f"rocket-wizard deployment {self.deployment}")
            except (TransientError, ApiError) as exc:
                v = find(lambda v: v.get("name") == name)
                if v is None:
                    raise exc
        if on_resource:
            on_resource("vpc", str(v["id"]), {"name": v.get("name"), "region": self.region,
                                               "ip_range": v.get("ip_range")})
        return v["id"]

    # --- hosts
    def _tagged(self) -> dict[str, dict]:
        """Host name -> droplet, for droplets carrying the deployment tag (oldest wins)."""
        found: dict[str, dict] = {}
        for d in sorted(self.client.droplets(self.tag), key=lambda d: d["id"]):
            found.setdefault(self._host_of(d), d)
        return found

    def _create_body(self, spec: HostSpec, ssh_key_ids: list, vpc_id: str | None) -> dict:
        body: dict[str, Any] = {
            "name": self.droplet_name(spec.name),
            "region": self.region,
            "size": spec.size,
            "image": self.image,
            "ssh_keys": ssh_key_ids,
            "backups": self.backups != "none",
            "ipv6": False,
            "monitoring": self.monitoring,
            "tags": self.tags_for(spec.role),
            "user_data": spec.user_data,
        }
        if self.backups != "none":
            body["backup_policy"] = {"plan": self.backups, "hour": 4}
            if self.backups == "weekly":
                body["backup_policy"]["weekday"] = "SUN"
        if vpc_id:
            body["vpc_uuid"] = vpc_id
        if len(spec.user_data.encode()) > 64 * 1024:
            raise ProviderError(f"{spec.name}: user data exceeds DigitalOcean's 64 KiB limit")
        return body

    def _create(self, spec: HostSpec, body: dict, progress: ProgressCallback) -> dict:
        attempts = 0
        while True:
            attempts += 1
            try:
                droplet, _action = self.client.create_droplet(body)
                return droplet
            except TransientError as exc:
                # The droplet may exist although the answer was lost: look by tag first.
                existing = self._tagged().get(spec.name)
                if existing is not None:
                    progress(f"{spec.name}: the create call failed but the droplet exists (#{existing['id']})")
                    return existing
                if attempts >= 4:
                    raise
                wait = min(20.0, 2.0 ** attempts)
                progress(f"{spec.name}: {exc}; trying again in {wait:.0f}s")
                self._sleep(wait)

    def ensure_hosts(
        self,
        specs: list[HostSpec],
        *,
        on_resource: ResourceCallback,
        progress: ProgressCallback,
    ) -> list[Machine]:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ProviderError(f"duplicate host names in the plan: {names}")
        progress(f"looking for droplets tagged {self.tag}")
        existing = self._tagged()
        missing = [s for s in specs if s.name not in existing]
        for s in specs:
            if s.name in existing:
                d = existing[s.name]
                on_resource("droplet", str(d["id"]), self._resource_data(s, d))
                progress(f"{s.name}: droplet {d['name']} exists (#{d['id']}, {d['status']})")
                if d.get("size_slug") and d["size_slug"] != s.size:
                    progress(f"{s.name}: it has size {d['size_slug']}, the plan says {s.size}; "
                             "not resized (resize it in the DigitalOcean console)")
        if missing:
            key_ids = self.ensure_ssh_keys(on_resource)
            vpc_id = self.ensure_vpc(on_resource)
            for s in missing:
                body = self._create_body(s, key_ids, vpc_id)
                progress(f"{s.name}: creating droplet {body['name']} ({s.size}, {self.region}, {self.image})")
                d = self._create(s, body, progress)
                # Recorded before anything else happens: the caller writes it to the state.
                on_resource("droplet", str(d["id"]), self._resource_data(s, d))
                existing[s.name] = d
        ready = self._wait_active(specs, existing, progress)
        return [self._machine(s, ready[s.name]) for s in specs]

    def _resource_data(self, spec: HostSpec, d: dict) -> dict:
        return {"name": d.get("name"), "host": spec.name, "role": spec.role, "size": spec.size,
                "region": self.region, "tags": self.tags_for(spec.role)}

    def _wait_active(self, specs: list[HostSpec], droplets: dict[str, dict], progress: ProgressCallback) -> dict[str, dict]:
        wanted = {s.name for s in specs}
        started = self._clock()
        last_status: dict[str, str] = {}
        last_note = started
        powered_on: set[str] = set()
        while True:
            current = {name: d for name, d in self._tagged().items() if name in wanted}
            for name in wanted:
                if name not in current and name in droplets:
                    # Just created and not yet listed (eventual consistency): read it by id.
                    d = self.client.droplet(droplets[name]["id"])
                    if d is not None:
                        current[name] = d
            gone = sorted(wanted - set(current))
            if gone:
                raise ProviderError(f"droplets disappeared while waiting: {', '.join(gone)}")
            pending = []
            for name in sorted(current):
                d = current[name]
                public, private = addresses(d)
                ready = d["status"] == "active" and public and private
                status = "active" if ready else d["status"]
                if last_status.get(name) != status:
                    extra = f" {public} / {private}" if ready else ""
                    progress(f"{name}: {status}{extra} ({self._clock() - started:.0f}s)")
                    last_status[name] = status
                if not ready:
                    pending.append(name)
                if d["status"] == "off" and name not in powered_on:
                    # Switched off (by hand, or a resize): the plan wants it running.
                    progress(f"{name}: droplet is off; powering it on")
                    self.client.power_on(d["id"])
                    powered_on.add(name)
            if not pending:
                return current
            elapsed = self._clock() - started
            if elapsed > self.active_timeout:
                raise ProviderError(
                    f"droplets not active after {self.active_timeout:.0f}s: {', '.join(pending)} "
                    "(see the DigitalOcean console; rerun to keep waiting, nothing is created twice)")
            if self._clock() - last_note >= 30:
                progress(f"waiting for {len(pending)} droplet(s) to become active ({elapsed:.0f}s)")
                last_note = self._clock()
            self._sleep(self.poll_interval)

    def _machine(self, spec_or_none: HostSpec | None, d: dict) -> Machine:
        public, private = addresses(d)
        size = d.get("size") or {}
        role = spec_or_none.role if spec_or_none else next(
            (t[len("rw-role-"):] for t in d.get("tags") or [] if t.startswith("rw-role-")), "")
        return Machine(
            name=spec_or_none.name if spec_or_none else self._host_of(d),
            role=role,
            id=str(d["id"]),
            status=d.get("status") or "",
            public_ip=public,
            private_ip=private,
            size=d.get("size_slug"),
            price_monthly=size.get("price_monthly") if isinstance(size, dict) else None,
            extra={"droplet_name": d.get("name"), "region": (d.get("region") or {}).get("slug"),
                   "vpc_uuid": d.get("vpc_uuid"), "tags": list(d.get("tags") or []),
                   "created_at": d.get("created_at")},
        )

    def list_hosts(self) -> list[Machine]:
        return [self._machine(None, d) for d in sorted(self.client.droplets(self.tag), key=lambda d: d["id"])]

    def destroy(
        self,
        *,
        progress: ProgressCallback,
        confirm: Callable[[list[Machine]], bool] | None = None,
        timeout: float = 300.0,
    ) -> list[Machine]:
        """Delete every droplet with the deployment tag, after showing the list (and ``confirm``)."""
        hosts = self.list_hosts()
        if not hosts:
            progress(f"no droplets tagged {self.tag}")
            return []
        progress(f"droplets tagged {self.tag}:")
        for m in hosts:
            progress(f"  {m.extra.get('droplet_name')} #{m.id} {m.status} {m.public_ip or '-'} {m.size or ''}")
        if confirm is not None and not confirm(hosts):
            progress("destroy cancelled")
            return []
        for m in hosts:
            progress(f"deleting {m.extra.get('droplet_name')} (#{m.id})")
            self.client.delete_droplet(m.id)
        started = self._clock()
        ids = {m.id for m in hosts}
        while True:
            left = [d for d in self.client.droplets(self.tag) if str(d["id"]) in ids]
            if not left:
                progress(f"{len(hosts)} droplet(s) deleted")
                return hosts
            if self._clock() - started > timeout:
                raise ProviderError(f"droplets still present after {timeout:.0f}s: "
                                    + ", ".join(d["name"] for d in left))
            self._sleep(self.poll_interval)
