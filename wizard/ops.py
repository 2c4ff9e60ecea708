"""Operations a step asks for, and how they travel to a host in one round trip.

A step's ``check`` returns a ``Change`` holding ops; the default ``apply`` renders
every op of that change into ONE shell script (``set -e``), so a changed step costs
one SSH round trip. Files travel base64-encoded inside the script and land by
atomic rename, so a reader never sees half a file. Secrets are redacted from
everything that is logged.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Cmd:
    script: str
    secrets: tuple[str, ...] = ()   # values to redact from logs and errors


@dataclass(frozen=True)
class Put:
    path: str
    content: bytes | str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False            # never log the content

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content


Op = Cmd | Put


@dataclass
class Rendered:
    script: str                      # what is sent
    shown: str                       # what is logged (bodies elided, secrets redacted)
    secrets: tuple[str, ...] = field(default_factory=tuple)


def _put_lines(op: Put) -> tuple[str, str]:
    path = shlex.quote(op.path)
    parent = shlex.quote(str(PurePosixPath(op.path).parent))
    body = base64.encodebytes(op.data).decode()
    head = (
        f"mkdir -p {parent}\n"
        f"__rw_tmp=$(mktemp {parent}/.rw.XXXXXX)\n"
    )
    tail = (
        f"chown {shlex.quote(op.owner)}:{shlex.quote(op.group)} \"$__rw_tmp\"\n"
        f"chmod {op.mode:o} \"$__rw_tmp\"\n"
        f"mv -f \"$__rw_tmp\" {path}\n"
    )
    sent = head + f"base64 -d > \"$__rw_tmp\" <<'__RW_EOF__'\n{body}__RW_EOF__\n" + tail
    what = "secret" if op.secret else f"{len(op.data)} bytes"
    shown = f"# write {op.path} ({what}, mode {op.mode:o}, {op.owner}:{op.group})\n"
    return sent, shown


def render(ops: list[Op]) -> Rendered:
    sent, shown, secrets = ["set -e"], [], []
    for op in ops:
        if isinstance(op, Put):
            s, v = _put_lines(op)
            sent.append(s)
            shown.append(v)
        else:
            sent.append(op.script)
            shown.append(op.script)
            secrets.extend(op.secrets)
    r = Rendered("\n".join(sent) + "\n", "\n".join(shown), tuple(s for s in secrets if s))
    r.shown = redact(r.shown, r.secrets)
    return r


def redact(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    for s in sorted(set(secrets), key=len, reverse=True):
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text
