"""A minimal WebSocket client (RFC 6455) for the tests: handshake, masked text
frames, and Meteor's DDP connect, over plain TCP or TLS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WSError(Exception):
    pass


def _recv_until(sock, marker: bytes, limit: int = 65536) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise WSError(f"connection closed during handshake: {buf[:200]!r}")
        buf += chunk
        if len(buf) > limit:
            raise WSError("handshake answer too long")
    return buf


class WebSocket:
    def __init__(self, host: str, port: int, path: str = "/websocket", *, tls: ssl.SSLContext | None = None,
                 server_name: str | None = None, host_header: str | None = None, timeout: float = 10):
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = tls.wrap_socket(raw, server_hostname=server_name or host) if tls else raw
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {host_header or server_name or host}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        head = _recv_until(self.sock, b"\r\n\r\n")
        head, _, self.pending = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = lines[0]
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if " 101 " not in self.status + " ":
            raise WSError(f"no upgrade: {self.status}")
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if self.headers.get("sec-websocket-accept") != want:
            raise WSError("wrong Sec-WebSocket-Accept")

    def send_text(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise WSError("connection closed")
            self.pending += chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def recv_text(self) -> str:
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data = self._read(n)
            if b0 & 0x0F == 0x1:
                return data.decode()
            if b0 & 0x0F == 0x8:
                raise WSError("closed by server")

    def ddp_connect(self) -> dict:
        """Meteor's DDP handshake: {"server_id"}, then connect -> connected."""
        first = json.loads(self.recv_text())
        if "server_id" not in first:
            raise WSError(f"unexpected first message {first}")
        self.send_text(json.dumps({"msg": "connect", "version": "1", "support": ["1"]}))
        return json.loads(self.recv_text())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
