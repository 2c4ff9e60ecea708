"""Validate recorded API exchanges against DigitalOcean's OpenAPI document.

The document is found at ``../shared/do-openapi/`` beside the repository (CI
clones main into a folder with shared/ next to it), else at /work/shared. It is
parsed once per process (about 3 s) and kept.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from tests.doubles.digitalocean import Exchange

SPEC_NAME = "DigitalOcean-public.v2.bundled.yaml"
SERVER = "https://api.digitalocean.com"


def spec_path() -> Path | None:
    repo = Path(__file__).resolve().parents[2]
    for folder in (repo.parent / "shared" / "do-openapi", Path("/work/shared/do-openapi")):
        if (folder / SPEC_NAME).is_file():
            return folder / SPEC_NAME
    return None


@functools.lru_cache(maxsize=1)
def openapi():
    import yaml
    from openapi_core import Config, OpenAPI

    path = spec_path()
    if path is None:
        raise FileNotFoundError(f"{SPEC_NAME} not found beside the repository or in /work/shared")
    # YAML parsing is most of the cost (seconds); a JSON copy keyed by size and mtime loads in
    # a fraction of that on later runs.
    st = path.stat()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rocket-wizard-tests" / \
        f"do-openapi-{st.st_size}-{st.st_mtime_ns}.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=loader)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
            tmp.replace(cache)
        except OSError:
            pass
    # The published document itself fails the spec validator (an unrelated
    # schema's null default), so skip that check and validate our traffic only.
    return OpenAPI.from_dict(data, config=Config(spec_validator_cls=None))


def _request(ex: Exchange):
    from openapi_core.testing import MockRequest

    args = [(k, v) for k, values in ex.query.items() for v in values]
    headers = {k: v for k, v in ex.headers.items() if k in ("authorization", "content-type")}
    return MockRequest(SERVER, ex.method, ex.path.rstrip("/") or "/", args=args, headers=headers,
                       data=ex.body or None, content_type="application/json")


def _response(ex: Exchange):
    from openapi_core.testing import MockResponse

    ctype = ex.response_headers.get("content-type", "application/json").split(";")[0]
    return MockResponse(ex.response_body or b"", status_code=ex.status,
                        headers={k: str(v) for k, v in ex.response_headers.items()}, content_type=ctype)


def check_exchange(ex: Exchange, *, requests: bool = True, responses: bool = True) -> list[str]:
    """Problems with one exchange (empty when both shapes validate)."""
    api = openapi()
    problems = []
    label = f"{ex.method} {ex.path} -> {ex.status}"
    if requests:
        try:
            api.validate_request(_request(ex))
        except Exception as exc:   # openapi-core raises a family of errors; report them all
            problems.append(f"request {label}: {_explain(exc)}")
    if responses and ex.status:
        try:
            api.validate_response(_request(ex), _response(ex))
        except Exception as exc:
            problems.append(f"response {label}: {_explain(exc)}")
    return problems


def check_exchanges(exchanges: list[Exchange], **kw) -> list[str]:
    problems: list[str] = []
    for ex in exchanges:
        problems.extend(check_exchange(ex, **kw))
    return problems


def _explain(exc: Exception) -> str:
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        inner = getattr(cause, "schema_errors", None)
        if inner:
            parts.extend(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in inner[:5])
        else:
            parts.append(f"{type(cause).__name__}: {cause}"[:300])
        cause = cause.__cause__
    return " | ".join(parts)
