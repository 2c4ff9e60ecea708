"""The plan: one model behind the answers file and the screens.

Everything the wizard will build is decided here and validated before anything
costs money. Both front ends fill this same model: ``load_plan`` from a TOML
answers file, the Plan screen field by field (``Plan.model_validate`` on the
form's values). An invalid value becomes ONE line naming the field and what is
accepted (``PlanError``), never a traceback.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import catalog, versions

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}[a-z0-9]$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
RESERVED_USERS = {"root", "daemon", "bin", "sys", "nobody", "mongodb", "rocketchat", "www-data"}


class PlanError(Exception):
    """A one-line description of what is wrong with the answers."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Sizes(_Strict):
    mongo: str = "s-1vcpu-2gb"
    web: str = "s-2vcpu-4gb"

    @field_validator("mongo", "web")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in catalog.SIZES:
            raise ValueError(f"{v!r} is not a known size; accepted: {', '.join(catalog.SIZES)}")
        return v


def _url(v: str | None, what: str) -> str | None:
    if v is None or v == "":
        return None
    p = urlparse(v)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"{v!r} is not an http(s) URL for {what}")
    return v.rstrip("/")


class Mirrors(_Strict):
    """Where to download from instead of the internet (air-gapped installs, the lab)."""

    mongodb_apt: str | None = None          # base of an apt repo laid out like repo.mongodb.org/apt
    rocketchat_releases: str | None = None  # like https://releases.rocket.chat
    node: str | None = None                 # like https://nodejs.org/dist
    deno: str | None = None                 # like https://github.com/denoland/deno/releases/download

    @field_validator("mongodb_apt", "rocketchat_releases", "node", "deno")
    @classmethod
    def _urls(cls, v: str | None, info) -> str | None:
        return _url(v, info.field_name)


class Plan(_Strict):
    name: str = Field(description="deployment name: droplet names, tags and the state folder use it")
    provider: Literal["digitalocean", "lab"] = "digitalocean"
    region: str = "nyc3"
    image: str = "ubuntu-24-04-x64"
    sizes: Sizes = Sizes()
    mongo_members: int = 3
    app_hosts: int = 1
    instances_per_host: int | None = None
    domain: str
    admin_email: str
    admin_username: str = "admin"
    sudo_user: str = "rocket"
    rocketchat_version: str = "8.2.0"
    mongodb_version: str = "8.0"
    ssh_key: Path = Path("~/.ssh/id_ed25519")
    backups: Literal["none", "weekly", "daily"] = "weekly"
    timezone: str = "UTC"
    licence: Literal["starter", "pro", "enterprise"] | None = None
    mirrors: Mirrors = Mirrors()
    acme_server: str | None = None
    acme_ca_bundle: Path | None = None   # CA that signs the ACME server's own TLS (pebble in the lab)

    # ---- field checks -------------------------------------------------
    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"{v!r}: use 2-31 lowercase letters, digits and '-', starting with a letter")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v not in catalog.REGIONS and v != "lab":
            raise ValueError(f"{v!r} is not a known region; accepted: {', '.join(catalog.REGIONS)}")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if v not in catalog.IMAGES:
            raise ValueError(f"{v!r} is not supported; accepted: {', '.join(catalog.IMAGES)}")
        return v

    @field_validator("mongo_members")
    @classmethod
    def _members(cls, v: int) -> int:
        if v not in (1, 3, 5):
            raise ValueError(
                f"{v} members: use 3 (production) or 5, or 1 for a trial; an even count "
                "cannot elect a primary after one failure"
            )
        return v

    @field_validator("app_hosts")
    @classmethod
    def _app_hosts(cls, v: int) -> int:
        if not 1 <= v <= 10:
            raise ValueError(f"{v}: use 1 to 10 web hosts")
        return v

    @field_validator("instances_per_host")
    @classmethod
    def _instances(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 16:
            raise ValueError(f"{v}: use 1 to 16 Rocket.Chat instances per host")
        return v

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        v = v.strip().lower().rstrip(".")
        labels = v.split(".")
        try:
            ipaddress.ip_address(v)
            raise ValueError(f"{v!r} is an address; a domain name is needed for the TLS certificate")
        except ValueError as e:
            if "is an address" in str(e):
                raise
        if len(labels) < 2 or len(v) > 253 or not all(LABEL_RE.match(x) for x in labels) or labels[-1].isdigit():
            raise ValueError(f"{v!r} is not a domain name like chat.example.com")
        return v

    @field_validator("admin_email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL_RE.match(v):
            raise ValueError(f"{v!r} is not an email address like ops@example.com")
        return v

    @field_validator("admin_username", "sudo_user")
    @classmethod
    def _user(cls, v: str, info) -> str:
        if not USER_RE.match(v):
            raise ValueError(f"{v!r}: use lowercase letters, digits, '_' and '-', starting with a letter")
        if info.field_name == "sudo_user" and v in RESERVED_USERS:
            raise ValueError(f"{v!r} is a system account; choose a personal user name")
        return v

    @field_validator("rocketchat_version")
    @classmethod
    def _rc_version(cls, v: str) -> str:
        versions.parse_version(v)
        if versions.engines_for(v) is None:
            raise ValueError(f"{v!r} is not a supported release; accepted: {versions.SUPPORTED_RELEASES}")
        return v

    @field_validator("mongodb_version")
    @classmethod
    def _mongo_version(cls, v: str) -> str:
        if v not in versions.INSTALLABLE_MONGO:
            raise ValueError(f"{v!r}: accepted MongoDB series: {', '.join(versions.INSTALLABLE_MONGO)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone like UTC or Europe/Berlin") from None
        return v

    @field_validator("acme_server")
    @classmethod
    def _acme(cls, v: str | None) -> str | None:
        return _url(v, "acme_server")

    @field_validator("ssh_key")
    @classmethod
    def _key(cls, v: Path, info) -> Path:
        p = v.expanduser()
        pub = p.with_name(p.name + ".pub")
        if info.context and not info.context.get("check_files", True):
            return p        # `plan` creates nothing: a missing key is a warning there
        if not p.is_file():
            raise ValueError(f"{str(v)!r} does not exist; give the path of your SSH private key (its .pub beside it)")
        if not pub.is_file():
            raise ValueError(f"{str(pub)!r} is missing; the public key must sit beside the private key")
        try:
            text = pub.read_text().strip()
        except OSError as e:
            raise ValueError(f"cannot read {str(pub)!r}: {e.strerror}") from None
        if not text.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
            raise ValueError(f"{str(pub)!r} is not an OpenSSH public key")
        return p

    @field_validator("acme_ca_bundle")
    @classmethod
    def _bundle(cls, v: Path | None, info) -> Path | None:
        check = not info.context or info.context.get("check_files", True)
        if check and v is not None and not v.expanduser().is_file():
            raise ValueError(f"{str(v)!r} does not exist")
        return v.expanduser() if v else None

    # ---- checks across fields ----------------------------------------
    @model_validator(mode="after")
    def _cross(self) -> "Plan":
        eng = versions.engines_for(self.rocketchat_version)
        if eng and self.mongodb_version not in eng.mongo:
            raise ValueError(
                f"mongodb_version: Rocket.Chat {self.rocketchat_version} runs on MongoDB "
                f"{', '.join(eng.mongo)}, not {self.mongodb_version}"
            )
        if self.provider == "lab" and self.region != "lab":
            object.__setattr__(self, "region", "lab")
        if self.provider == "digitalocean" and self.region == "lab":
            raise ValueError("region: 'lab' is only for provider = \"lab\"")
        return self

    # ---- derived ------------------------------------------------------
    @property
    def distro(self) -> str:
        return catalog.IMAGES[self.image][0]

    @property
    def codename(self) -> str:
        return catalog.IMAGES[self.image][1]

    def size_of(self, role: str) -> catalog.Size:
        if self.provider == "lab":
            return catalog.LAB_SIZE
        return catalog.SIZES[getattr(self.sizes, role)]

    @property
    def instances(self) -> int:
        """Rocket.Chat instances per web host: one per vCPU, at least 2 (the runbook runs 2 on 1 vCPU)."""
        if self.instances_per_host is not None:
            return self.instances_per_host
        return max(2, self.size_of("web").vcpus)

    @property
    def needs_scalability_licence(self) -> bool:
        """Several instances stay in sync only with a licence that includes scalability."""
        return self.instances * self.app_hosts > 1

    @property
    def trial(self) -> bool:
        return self.mongo_members == 1

    def hosts(self) -> list[tuple[str, str]]:
        """(short name, role) for every planned host, in a fixed order."""
        out = [(f"mongo{i}", "mongo") for i in range(1, self.mongo_members + 1)]
        out += [(f"web{i}", "web") for i in range(1, self.app_hosts + 1)]
        return out

    def fqdn(self, short: str) -> str:
        return f"{short}.{self.domain}"

    def ports(self) -> list[int]:
        return [3001 + i for i in range(self.instances)]

    def missing_files(self) -> list[str]:
        """Files apply will need that are not there (``plan`` warns instead of failing)."""
        out = []
        pub = self.ssh_key.with_name(self.ssh_key.name + ".pub")
        for path, what in [(self.ssh_key, "ssh_key"), (pub, "ssh_key's .pub")]:
            if not path.is_file():
                out.append(f"{what}: {path} does not exist yet; apply needs it")
        return out

    def public_key(self) -> str:
        return self.ssh_key.with_name(self.ssh_key.name + ".pub").read_text().strip()


# ---- answers file -----------------------------------------------------------

def _one_line(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"]) or "answers"
    msg = e["msg"].removeprefix("Value error, ")
    typ = e["type"]
    if typ == "missing":
        msg = "is required"
    elif typ == "extra_forbidden":
        msg = "is not a known setting"
    elif typ == "literal_error":
        msg = msg.replace("Input should be", "accepted:")
    elif typ.endswith("_parsing") or typ.endswith("_type"):
        msg = f"{msg.lower()} (got {e.get('input')!r})"
    if msg.startswith(loc + ":"):
        return msg
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def plan_from_dict(data: dict[str, Any], base_dir: Path | None = None, check_files: bool = True) -> Plan:
    data = dict(data)
    for key in ("ssh_key", "acme_ca_bundle"):
        val = data.get(key)
        if isinstance(val, str) and base_dir is not None:
            p = Path(val).expanduser()
            data[key] = str(p if p.is_absolute() else base_dir / p)
    try:
        return Plan.model_validate(data, context={"check_files": check_files})
    except ValidationError as e:
        raise PlanError(_one_line(e)) from None
    except ValueError as e:   # raised by helpers outside pydantic's wrapping
        raise PlanError(str(e)) from None


def load_plan(path: str | Path, check_files: bool = True) -> Plan:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PlanError(f"{path}: no such answers file") from None
    except IsADirectoryError:
        raise PlanError(f"{path}: is a folder, not an answers file") from None
    except PermissionError:
        raise PlanError(f"{path}: cannot be read (permission denied)") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{path}: not valid TOML: {e}") from None
    return plan_from_dict(data, base_dir=path.parent.resolve(), check_files=check_files)


def plan_to_toml(plan: Plan) -> str:
    data = plan.model_dump(mode="json", exclude_none=True)
    return tomli_w.dumps(data)


def save_plan(plan: Plan, path: str | Path) -> None:
    from .fsutil import atomic_write

    atomic_write(Path(path), plan_to_toml(plan).encode(), mode=0o644)
