"""Offline DigitalOcean catalogue: sizes with prices, regions, images.

Used when no token is set (``rocket-wizard plan`` must work without one) and to
validate answers files offline. Live values from ``GET /v2/sizes`` replace the
prices whenever a token is available. Prices are USD per month as published by
DigitalOcean; the date says when they were last checked.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_CHECKED = "2026-12-01"


@dataclass(frozen=True)
class Size:
    slug: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    price_monthly: float


SIZES: dict[str, Size] = {
    s.slug: s
    for s in [
        Size("s-1vcpu-1gb", 1, 1024, 25, 6.0),
        Size("s-1vcpu-2gb", 1, 2048, 50, 12.0),
        Size("s-2vcpu-2gb", 2, 2048, 60, 18.0),
        Size("s-2vcpu-4gb", 2, 4096, 80, 24.0),
        Size("s-4vcpu-8gb", 4, 8192, 160, 48.0),
        Size("s-8vcpu-16gb", 8, 16384, 320, 96.0),
    ]
}

REGIONS: dict[str, str] = {
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "sfo2": "San Francisco 2",
    "sfo3": "San Francisco 3",
    "tor1": "Toronto 1",
    "ams3": "Amsterdam 3",
    "lon1": "London 1",
    "fra1": "Frankfurt 1",
    "sgp1": "Singapore 1",
    "blr1": "Bangalore 1",
    "syd1": "Sydney 1",
    "atl1": "Atlanta 1",
}

# image slug -> (distribution id used by recipes, codename, human name)
IMAGES: dict[str, tuple[str, str, str]] = {
    "ubuntu-24-04-x64": ("ubuntu", "noble", "Ubuntu 24.04 LTS"),
    "debian-12-x64": ("debian", "bookworm", "Debian 12"),
}

# Backups cost a share of the droplet price.
BACKUP_SHARE = {"none": 0.0, "weekly": 0.20, "daily": 0.30}

# The lab has no prices; its hosts are shaped like this size for derived defaults.
LAB_SIZE = Size("lab", 2, 2048, 0, 0.0)
