"""SSH to the hosts: one asyncssh connection per host, host keys pinned.

Every host key is known before the first connection (the wizard generated it
and handed it to the droplet through cloud-init), so ``known_hosts`` is always
exactly that key: an unknown or changed key stops the run with a clear message.
Commands run as root (through ``sudo -n`` for a non-root login). Output is
streamed line by line as log events, with secrets redacted. Each exchange
counts as one round trip, so the engine can report what a run cost.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import asyncssh

from .ops import Op, redact, render

# OpenSSH's default MaxSessions is 10; stay below it.
MAX_CHANNELS = 8
CONNECT_TIMEOUT = 15
KEEPALIVE = 15


class SSHError(Exception):
    """One line an operator can act on."""


class CommandFailed(SSHError):
    def __init__(self, host: str, command: str, exit_status: int, output: str):
        self.host, self.command, self.exit_status, self.output = host, command, exit_status, output
        last = output.strip().splitlines()[-1:] or [""]
        super().__init__(f"{host}: command failed with exit status {exit_status}: {last[0][:200]}")


@dataclass
class Result:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class Target:
    """Where and how to reach one host."""

    name: str
    address: str
    user: str
    host_key: str            # OpenSSH public key line: the only key accepted
    client_key: Path
    port: int = 22


LogFn = Callable[[str, str, str], None]     # (host, stream, line)


class Connection:
    def __init__(self, target: Target, log: LogFn | None = None, secrets: Callable[[], list[str]] | None = None):
        self.target = target
        self._log = log or (lambda h, s, t: None)
        self._secrets = secrets or (lambda: [])
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sem = asyncio.Semaphore(MAX_CHANNELS)
        self._connect_lock = asyncio.Lock()
        self.round_trips = 0

    @property
    def name(self) -> str:
        return self.target.name

    async def connect(self) -> None:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            self._conn = None
            t = self.target
            try:
                trusted = asyncssh.import_public_key(t.host_key)
            except (asyncssh.KeyImportError, ValueError) as e:
                raise SSHError(f"{t.name}: the pinned host key in the state is unreadable ({e})") from None
            try:
                self._conn = await asyncssh.connect(
                    t.address, port=t.port, username=t.user,
                    client_keys=[str(t.client_key)],
                    known_hosts=([trusted], [], []),
                    connect_timeout=CONNECT_TIMEOUT,
                    keepalive_interval=KEEPALIVE, keepalive_count_max=8,
                    agent_path=None,
                )
            except asyncssh.HostKeyNotVerifiable:
                raise SSHError(
                    f"{t.name} ({t.address}): the host key does not match the key the wizard gave this "
                    "host; refusing to connect (someone may be intercepting, or the host was rebuilt)"
                ) from None
            except asyncssh.PermissionDenied:
                raise SSHError(f"{t.name} ({t.address}): {t.user} was refused (key {t.client_key})") from None
            except (OSError, asyncio.TimeoutError, asyncssh.Error) as e:
                raise SSHError(f"{t.name} ({t.address}:{t.port}): cannot connect: {e}") from None

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            try:
                await self._conn.wait_closed()
            except Exception:
                pass
            self._conn = None

    def _wrap(self, cmd: str) -> str:
        if self.target.user == "root":
            return cmd
        return "sudo -n " + cmd

    async def run(self, script: str, *, check: bool = True, stream: bool = True,
                  shown: str | None = None, secrets: tuple[str, ...] = (), timeout: float | None = None) -> Result:
        """Run a shell script as root in one round trip.

        The script travels on stdin into a temporary file and runs with stdin
        from /dev/null, so a command inside it that reads stdin cannot eat the
        rest of the script.
        """
        await self.connect()
        assert self._conn is not None
        hidden = tuple(secrets) + tuple(self._secrets())
        remote = (
            "__rw=$(mktemp) && cat > \"$__rw\" && "
            + self._wrap('sh "$__rw"') + " </dev/null; __rc=$?; rm -f \"$__rw\"; exit $__rc"
        )
        self.round_trips += 1
        out_lines: list[str] = []
        err_lines: list[str] = []
        async with self._sem:
            try:
                proc = await self._conn.create_process(f"sh -c {shlex.quote(remote)}", input=script)
            except asyncssh.Error as e:
                raise SSHError(f"{self.name}: {e}") from None

            async def pump(reader, sink, name):
                async for line in reader:
                    line = redact(line.rstrip("\n"), hidden)
                    sink.append(line)
                    if stream:
                        self._log(self.name, name, line)

            try:
                await asyncio.wait_for(
                    asyncio.gather(pump(proc.stdout, out_lines, "out"), pump(proc.stderr, err_lines, "err"), proc.wait()),
                    timeout,
                )
            except asyncio.TimeoutError:
                proc.kill()
                raise SSHError(f"{self.name}: command timed out after {timeout:.0f} s") from None
            status = proc.exit_status if proc.exit_status is not None else 255
        res = Result(status, "\n".join(out_lines), "\n".join(err_lines))
        if check and not res.ok:
            raise CommandFailed(self.name, redact(shown or script, hidden), status,
                                (res.stdout + "\n" + res.stderr).strip())
        return res

    async def run_ops(self, ops: list[Op], *, check: bool = True) -> Result:
        r = render(ops)
        for line in r.shown.splitlines():
            self._log(self.name, "info", "$ " + line)
        return await self.run(r.script, check=check, shown=r.shown, secrets=r.secrets)

    async def put(self, path: str, data: bytes | str, mode: int = 0o644, owner: str = "root", group: str = "root",
                  secret: bool = False) -> None:
        from .ops import Put
        await self.run_ops([Put(path, data, mode, owner, group, secret)])

    async def sftp_put(self, local: Path, remote: str, mode: int = 0o644) -> None:
        """Upload a (large) file over SFTP to a temporary name, then rename atomically."""
        await self.connect()
        assert self._conn is not None
        tmp = f"/tmp/.rw-upload-{int(time.time() * 1000)}"
        self.round_trips += 1
        async with self._sem:
            async with self._conn.start_sftp_client() as sftp:
                await sftp.put(str(local), tmp)
        await self.run(f"install -m {mode:o} {shlex.quote(tmp)} {shlex.quote(remote)} && rm -f {shlex.quote(tmp)}")

    async def forward(self, remote_host: str, remote_port: int) -> tuple[asyncssh.SSHListener, int]:
        """A local port on 127.0.0.1 forwarded to remote_host:remote_port as seen from this host."""
        await self.connect()
        assert self._conn is not None
        listener = await self._conn.forward_local_port("127.0.0.1", 0, remote_host, remote_port)
        return listener, listener.get_port()


class Pool:
    """One connection per host, reused for the whole run."""

    def __init__(self, log: LogFn | None = None, secrets: Callable[[], list[str]] | None = None):
        self._log = log
        self._secrets = secrets
        self._conns: dict[str, Connection] = {}

    def get(self, target: Target) -> Connection:
        c = self._conns.get(target.name)
        if c is None or c.target != target:
            carried = 0
            if c is not None:          # e.g. the login user changed: reconnect, keep the count
                carried = c.round_trips
                asyncio.ensure_future(c.close())
            c = self._conns[target.name] = Connection(target, self._log, self._secrets)
            c.round_trips = carried
        return c

    async def drop(self, name: str) -> None:
        """Forget a host's connection (it broke); the next get() reconnects, keeping the count."""
        c = self._conns.get(name)
        if c is not None:
            await c.close()

    def round_trips(self) -> dict[str, int]:
        return {k: c.round_trips for k, c in self._conns.items()}

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._conns.values()), return_exceptions=True)
