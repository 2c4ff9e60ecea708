"""A real SSH server in the test process (asyncssh), running commands with /bin/sh.

Used by the core tests before (and besides) the lab: the engine talks real SSH,
with a pinned host key and key authentication; commands run on this machine
inside a temporary folder the tests give them.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh


@dataclass
class Server:
    host: str
    port: int
    host_public: str
    host_private: str
    client_key: Path
    commands: list[str]


class _SSHServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True


def start(tmp: Path, authorized_public: str) -> tuple[Server, callable]:
    """Start a server on 127.0.0.1 in its own thread and loop; returns (info, stop)."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    commands: list[str] = []
    ready = threading.Event()
    box: dict = {}

    async def handle(process: asyncssh.SSHServerProcess) -> None:
        commands.append(process.command or "")
        proc = await asyncio.create_subprocess_shell(
            process.command or "true",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
        status = await proc.wait()
        await process.stdout.drain()
        await process.stderr.drain()
        process.exit(status)

    def run() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop

        async def go():
            server = await asyncssh.listen(
                "127.0.0.1", 0, server_host_keys=[host_key],
                authorized_client_keys=asyncssh.import_authorized_keys(authorized_public + "\n"),
                process_factory=handle, server_factory=_SSHServer, sftp_factory=True, encoding=None,
            )
            box["server"] = server
            box["port"] = server.sockets[0].getsockname()[1]
            ready.set()

        loop.run_until_complete(go())
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)

    def stop() -> None:
        loop = box["loop"]
        loop.call_soon_threadsafe(box["server"].close)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)

    info = Server("127.0.0.1", box["port"], host_key.export_public_key("openssh").decode().strip(),
                  host_key.export_private_key("openssh").decode(), Path(), commands)
    return info, stop
