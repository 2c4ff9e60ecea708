"""The Rocket.Chat release server: what a release needs, read at run time.

``<base>/<version>/info`` (base: ``plan.mirrors.rocketchat_releases`` or
https://releases.rocket.chat) answers, for example::

    {"tag": "8.2.0", "commit": "...", "key": "build/rocket.chat-8.2.0.tgz",
     "etag": "...", "count": 1215, "nodeVersion": "22.22.3",
     "compatibleMongoVersions": ["8.0"]}

and ``<base>/<version>/download`` is the tarball. The document is the authority;
wizard.versions (the offline matrix) fills what it leaves out (Deno) and lets a
plan be checked with no network. ``resolve`` refuses a plan whose MongoDB series
the release does not support, before anything is created.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from wizard import versions

DEFAULT_RELEASES = "https://releases.rocket.chat"
DEFAULT_NODE_DIST = "https://nodejs.org/dist"
DEFAULT_DENO_DIST = "https://github.com/denoland/deno/releases/download"

# The matrix says "Deno 2" for 8.x; this is the 2.x that Rocket.Chat's own
# .tool-versions names (RocketChat/Rocket.Chat, checked 2026-12). A release
# document carrying "denoVersion" wins over it.
DENO_SERIES_DEFAULT = {"2": "2.6.10", "1": "1.43.5"}

Fetch = Callable[[str], Any]   # url -> parsed JSON (raises ReleaseError)


class ReleaseError(Exception):
    """The release server could not tell us what we need."""


class IncompatiblePlan(ReleaseError):
    """The plan asks for something the release does not support."""


@dataclass(frozen=True)
class Release:
    version: str                  # the release's tag, e.g. "8.2.0"
    node: str                     # exact Node version, e.g. "22.22.3"
    mongo: tuple[str, ...]        # compatible MongoDB series, e.g. ("8.0",)
    deno: str | None              # exact Deno version, None when not needed
    info_url: str
    tarball_url: str
    commit: str | None = None

    def node_url(self, dist: str = DEFAULT_NODE_DIST) -> str:
        name = f"node-v{self.node}-linux-x64.tar.gz"
        return f"{dist.rstrip('/')}/v{self.node}/{name}"

    def node_shasums_url(self, dist: str = DEFAULT_NODE_DIST) -> str:
        return f"{dist.rstrip('/')}/v{self.node}/SHASUMS256.txt"

    def deno_url(self, dist: str = DEFAULT_DENO_DIST) -> str | None:
        if not self.deno:
            return None
        return f"{dist.rstrip('/')}/v{self.deno}/deno-x86_64-unknown-linux-gnu.zip"


# ---------------------------------------------------------------- plan access
def _mirror(plan: Any, name: str) -> str | None:
    mirrors = getattr(plan, "mirrors", None)
    value = getattr(mirrors, name, None) if mirrors is not None else None
    return str(value).rstrip("/") if value else None


def releases_base(plan: Any) -> str:
    return _mirror(plan, "rocketchat_releases") or DEFAULT_RELEASES


def node_dist(plan: Any) -> str:
    return _mirror(plan, "node") or DEFAULT_NODE_DIST


def deno_dist(plan: Any) -> str:
    return _mirror(plan, "deno") or DEFAULT_DENO_DIST


# ---------------------------------------------------------------- parsing
def mongo_series(value: Any) -> str:
    """'8.0', 8.0, '8', 8, '8.0.4' -> '8.0' (the server is not consistent)."""
    text = str(value).strip().lstrip("v")
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.[\dx*]+)?", text)
    if not m:
        raise ReleaseError(f"unexpected MongoDB version in release info: {value!r}")
    return f"{int(m.group(1))}.{int(m.group(2) or 0)}"


def _vtuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.lstrip("v").split("."))


_CMP = re.compile(r"(>=|<=|>|<|=|\^|~)?\s*v?(\d+(?:\.\d+){0,2})")


def _satisfies(version: str, clause: str) -> bool:
    v = _vtuple(version)
    for op, ver in _CMP.findall(clause):
        want = _vtuple(ver)
        n = len(want)
        if op in ("", "="):
            ok = v[:n] == want
        elif op == ">=":
            ok = v >= want
        elif op == ">":
            ok = v > want
        elif op == "<=":
            ok = v <= want
        elif op == "<":
            ok = v < want
        elif op == "^":
            ok = v >= want and v[0] == want[0]
        else:  # "~"
            ok = v >= want and v[:2] == want[:2]
        if not ok:
            return False
    return True


def node_alternatives(spec: str) -> list[str]:
    """'>=22.22.3 <23 or >=24.15.0 <25' -> ['>=22.22.3 <23', '>=24.15.0 <25']."""
    return [a.strip() for a in re.split(r"\|\||\bor\b", spec) if a.strip()]


def pick_node(spec: str, available: list[str] | None) -> str:
    """An exact Node version for a nodeVersion value.

    Exact versions are taken as they are. A major ("22") or a range picks the
    newest matching version from the dist index (the first alternative of a
    range is Rocket.Chat's build series, so it is preferred); with no index,
    the range's lower bound.
    """
    spec = spec.strip().lstrip("v")
    if re.fullmatch(r"\d+\.\d+\.\d+", spec):
        return spec
    alternatives = node_alternatives(spec)
    for alt in alternatives:
        matches = [v for v in (available or []) if _satisfies(v, alt)]
        if matches:
            return max(matches, key=_vtuple)
    lower = re.search(r">=\s*v?(\d+\.\d+\.\d+)", alternatives[0]) if alternatives else None
    if lower:
        return lower.group(1)
    raise ReleaseError(f"no Node version found for {spec!r}")


def parse_info(data: Any, requested: str, base: str = DEFAULT_RELEASES,
               node_versions: list[str] | None = None) -> Release:
    """A Release from the info document (pure; tested on recorded documents)."""
    if not isinstance(data, dict):
        raise ReleaseError(f"release info for {requested} is not a JSON object")
    tag = str(data.get("tag") or "").lstrip("v")
    if not tag:
        raise ReleaseError(f"release {requested} not found on {base} (no tag in its info)")
    try:
        versions.parse_version(tag)
    except ValueError as exc:
        raise ReleaseError(f"release info names an odd tag {tag!r}") from exc
    matrix = versions.engines_for(tag)
    node_spec = data.get("nodeVersion") or (matrix.node if matrix else None)
    if not node_spec:
        raise ReleaseError(f"release {tag}: no nodeVersion in its info and not in the offline matrix")
    mongo_raw = data.get("compatibleMongoVersions")
    if mongo_raw is None:
        mongo_raw = list(matrix.mongo) if matrix else []
    if isinstance(mongo_raw, (str, int, float)):
        mongo_raw = [mongo_raw]
    mongo = tuple(sorted({mongo_series(m) for m in mongo_raw}, key=_vtuple))
    if not mongo:
        raise ReleaseError(f"release {tag}: no compatible MongoDB versions in its info")
    deno = data.get("denoVersion")
    if not deno and matrix and matrix.deno:
        deno = matrix.deno
    if deno:
        deno = str(deno).lstrip("v")
        deno = DENO_SERIES_DEFAULT.get(deno, deno)
    return Release(
        version=tag,
        node=pick_node(str(node_spec), node_versions),
        mongo=mongo,
        deno=deno or None,
        info_url=f"{base}/{requested}/info",
        tarball_url=f"{base}/{tag}/download",
        commit=data.get("commit"),
    )


def check_plan(plan: Any, release: Release) -> list[str]:
    """Reasons the plan cannot run this release (empty: compatible)."""
    problems = []
    wanted = getattr(plan, "mongodb_version", None)
    if wanted:
        series = mongo_series(wanted)
        if series not in release.mongo:
            problems.append(
                f"Rocket.Chat {release.version} supports MongoDB {', '.join(release.mongo)}; "
                f"the plan asks for {series}")
    if not any(s in versions.INSTALLABLE_MONGO for s in release.mongo):
        problems.append(
            f"Rocket.Chat {release.version} needs MongoDB {', '.join(release.mongo)}, which the "
            f"wizard cannot install (it installs {', '.join(versions.INSTALLABLE_MONGO)})")
    return problems


# ---------------------------------------------------------------- network
def fetch_json(url: str, timeout: float = 15.0) -> Any:
    req = urllib.request.Request(url, headers={"User-Agent": "rocket-wizard",
                                               "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ReleaseError(f"{url}: not found (no such release?)") from None
        raise ReleaseError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReleaseError(f"{url}: cannot reach the release server ({reason})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReleaseError(f"{url}: the answer is not JSON") from None


def node_index(dist: str, fetch: Fetch = fetch_json) -> list[str]:
    """Versions listed in <dist>/index.json (nodejs.org's format), without the 'v'."""
    data = fetch(f"{dist}/index.json")
    return [str(e["version"]).lstrip("v") for e in data if isinstance(e, dict) and "version" in e]


def resolve(plan: Any, fetch: Fetch = fetch_json) -> Release:
    """Read the plan's release from the release server and check the plan against it.

    Blocking (urllib): call it from a worker thread (``asyncio.to_thread``).
    Raises IncompatiblePlan with every reason when the plan cannot work.
    """
    version = str(getattr(plan, "rocketchat_version", None) or "latest")
    base = releases_base(plan)
    data = fetch(f"{base}/{version}/info")
    node_spec = str(data.get("nodeVersion") or "") if isinstance(data, dict) else ""
    if not node_spec and isinstance(data, dict) and data.get("tag"):
        try:
            matrix = versions.engines_for(str(data["tag"]).lstrip("v"))
        except ValueError:
            matrix = None   # parse_info reports the odd tag
        node_spec = matrix.node if matrix else ""
    available = None
    if node_spec and not re.fullmatch(r"v?\d+\.\d+\.\d+", node_spec.strip()):
        available = node_index(node_dist(plan), fetch)
    release = parse_info(data, version, base, available)
    if release.node and not re.fullmatch(r"\d+\.\d+\.\d+", release.node):
        raise ReleaseError(f"cannot pin a Node version for {release.version}")
    problems = check_plan(plan, release)
    if problems:
        raise IncompatiblePlan("; ".join(problems))
    return release
