"""What the engine needs from a place that makes hosts (DigitalOcean, the lab).

A provider turns the plan's host list into running machines and reports their
addresses. It must be safe to call again after any interruption: hosts that
already exist (found by the deployment's tag, never by name alone) are reused,
never duplicated. Every resource is reported through ``on_resource`` the moment
it exists, so the caller can write it to the state before anything else happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


class ProviderError(Exception):
    """A one-line, operator-readable failure (bad token, unknown size, quota...)."""


@dataclass(frozen=True)
class HostSpec:
    """One host the plan asks for."""

    name: str            # short name, e.g. "mongo1"; the droplet is named "<deployment>-<name>"
    role: str            # "mongo" | "web"
    size: str            # provider size slug, e.g. "s-1vcpu-2gb"
    user_data: str       # cloud-init user data (holds the pinned host key: a secret)


@dataclass
class Machine:
    """A host as it exists at the provider."""

    name: str
    role: str
    id: str
    status: str                       # "new" | "active" | "off" | ...
    public_ip: str | None = None
    private_ip: str | None = None
    size: str | None = None
    price_monthly: float | None = None
    extra: dict = field(default_factory=dict)


ResourceCallback = Callable[[str, str, dict], None]   # (kind, id, data)
ProgressCallback = Callable[[str], None]


class Provider(Protocol):
    """Implemented by providers.digitalocean.DigitalOceanProvider and providers.lab.LabProvider."""

    def ensure_hosts(
        self,
        specs: list[HostSpec],
        *,
        on_resource: ResourceCallback,
        progress: ProgressCallback,
    ) -> list[Machine]:
        """Create what is missing (looked up by the deployment tag first), wait
        until every host is active with its addresses, and return them in the
        order of ``specs``. Blocking: the engine calls it in a thread."""

    def list_hosts(self) -> list[Machine]:
        """Every host carrying the deployment's tag."""

    def destroy(self, *, progress: ProgressCallback) -> list[Machine]:
        """Delete every host carrying the deployment's tag; return what was deleted."""

    def prices(self) -> dict[str, float]:
        """size slug -> USD per month (live when the provider can tell)."""
