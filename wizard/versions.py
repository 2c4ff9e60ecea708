"""Which Node, Deno and MongoDB versions a Rocket.Chat release runs with.

The authoritative source is the release server's ``/<version>/info`` document
(see wizard.releases, which reads it at run time). This offline table, taken
from the release notes' "Engine versions" sections (checked 2026-12), lets the
plan be validated before anything is downloaded or created, e.g. in
``rocket-wizard plan`` with no network.
"""

from __future__ import annotations

from dataclasses import dataclass

# MongoDB series the wizard can install (official apt repository, or a mirror).
INSTALLABLE_MONGO = ("7.0", "8.0")


@dataclass(frozen=True)
class Engines:
    node: str                     # exact version or "22" for "latest 22.x"
    mongo: tuple[str, ...]        # compatible MongoDB series
    deno: str | None              # None: the release does not need Deno


# (first minor, last minor) inclusive -> engines. Order matters: first match wins.
_MATRIX: list[tuple[tuple[int, int], tuple[int, int], Engines]] = [
    ((6, 5), (6, 8), Engines("14.21.3", ("4.4", "5.0", "6.0"), None)),
    ((7, 0), (7, 2), Engines("20.17.0", ("5.0", "6.0", "7.0"), None)),
    ((7, 3), (7, 8), Engines("22", ("5.0", "6.0", "7.0"), None)),
    ((7, 9), (7, 12), Engines("22", ("5.0", "6.0", "7.0"), "1.43.5")),
    # 8.0 dropped MongoDB 5.0/6.0.
    ((8, 0), (8, 1), Engines("22", ("7.0", "8.0"), "2")),
    ((8, 2), (8, 99), Engines("22.22.3", ("8.0",), "2")),
]

SUPPORTED_RELEASES = "6.5-6.8, 7.0-7.12, 8.0 and newer 8.x"


def parse_version(text: str) -> tuple[int, int, int]:
    parts = text.strip().split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a version number like 8.2.0: {text!r}")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def engines_for(rocketchat_version: str) -> Engines | None:
    major, minor, _ = parse_version(rocketchat_version)
    for lo, hi, engines in _MATRIX:
        if lo <= (major, minor) <= hi:
            return engines
    return None


def thp_wanted(mongodb_version: str) -> str:
    """Transparent huge pages as MongoDB documents them for this series.

    MongoDB 7.0 and older ask for THP off; 8.0 (new tcmalloc) asks for it on.
    """
    major = int(mongodb_version.split(".")[0])
    return "always" if major >= 8 else "never"
