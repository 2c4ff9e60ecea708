"""Finding the DigitalOcean token, and keeping it out of every log, file and error.

The order is doctl's: the ``DIGITALOCEAN_ACCESS_TOKEN`` environment variable, then
doctl's own config file (``access-token:``), then a prompt the caller provides.
The token lives only in memory, inside a :class:`Token` whose ``repr``/``str`` never
show it and which refuses to be pickled; nothing here ever writes it anywhere.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

from wizard.providers.base import ProviderError

ENV_VAR = "DIGITALOCEAN_ACCESS_TOKEN"
REDACTED = "[REDACTED]"


class TokenNotFound(ProviderError):
    """No token in the environment, in doctl's config, and none typed at the prompt."""


class Token:
    """A secret string that does not show itself.

    ``reveal()`` is the one way to the value; call it only where the value goes
    on the wire (the Authorization header).
    """

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "unknown") -> None:
        value = (value or "").strip()
        if not value:
            raise ValueError("empty token")
        self._value = value
        self.source = source          # "env" | "doctl" | "prompt" | ...

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Token(<redacted>, source={self.source!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Token", self._value))

    def __reduce__(self):
        # pickle, copy.deepcopy to disk caches, multiprocessing: never carry it silently.
        raise TypeError("a Token is never serialised")


def doctl_config_paths(env: Mapping[str, str] | None = None) -> list[Path]:
    """Where doctl keeps config.yaml on Linux and macOS (XDG first)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    paths = []
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        paths.append(Path(xdg) / "doctl" / "config.yaml")
    paths.append(home / ".config" / "doctl" / "config.yaml")
    paths.append(home / "Library" / "Application Support" / "doctl" / "config.yaml")
    return paths


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_doctl_token(path: Path) -> str | None:
    """The token of doctl's current context in ``path``, or None.

    doctl writes ``access-token: VALUE`` at the top level and, for named contexts,
    ``auth-contexts: {NAME: VALUE}`` with ``context: NAME``. Parsed by hand so the
    product does not depend on a YAML library for two keys.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    top: dict[str, str] = {}
    contexts: dict[str, str] = {}
    in_contexts = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            in_contexts = line.startswith("auth-contexts:")
            m = re.match(r"^([A-Za-z0-9_-]+):\s*(.*)$", line)
            if m:
                top[m.group(1)] = _unquote(m.group(2))
            continue
        if in_contexts:
            m = re.match(r"^\s+([^:]+):\s*(.*)$", line)
            if m:
                contexts[_unquote(m.group(1))] = _unquote(m.group(2))
    context = top.get("context", "")
    if context and context != "default" and contexts.get(context):
        return contexts[context]
    return top.get("access-token") or None


def find_token(
    *,
    env: Mapping[str, str] | None = None,
    config_paths: Iterable[Path] | None = None,
    prompt: Callable[[], str | None] | None = None,
) -> Token:
    """Environment, then doctl's config, then ``prompt()`` (e.g. a masked input)."""
    env = os.environ if env is None else env
    value = (env.get(ENV_VAR) or "").strip()
    if value:
        return Token(value, "env")
    for path in (doctl_config_paths(env) if config_paths is None else config_paths):
        value = (read_doctl_token(Path(path)) or "").strip()
        if value:
            return Token(value, "doctl")
    if prompt is not None:
        value = (prompt() or "").strip()
        if value:
            return Token(value, "prompt")
    raise TokenNotFound(
        f"no DigitalOcean token: set {ENV_VAR}, run `doctl auth init`, or type one when asked"
    )


def token_getter(*, interactive: bool = False, env: Mapping[str, str] | None = None,
                 prompt: Callable[[], str | None] | None = None) -> Callable[[], Token]:
    """A callable that finds the token on first use and then remembers it (in memory).

    The provider calls it only when it first talks to the API, so ``plan`` and
    ``review`` never ask for a token. ``interactive``: prompt with a masked input
    when neither the environment nor doctl has one.
    """
    if prompt is None and interactive:
        import getpass

        def prompt() -> str:
            return getpass.getpass("DigitalOcean API token (not stored): ")

    cache: list[Token] = []

    def get() -> Token:
        if not cache:
            cache.append(find_token(env=env, prompt=prompt))
        return cache[0]

    return get


def redact(text: str, *secrets: str | Token | None) -> str:
    """``text`` with every secret (and its Bearer form) replaced by [REDACTED]."""
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal() if isinstance(secret, Token) else str(secret)
        if value:
            text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the given secrets from every record it sees.

    A second line of defence: the provider never logs the token in the first place.
    """

    def __init__(self, *secrets: str | Token) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, *self._secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True
