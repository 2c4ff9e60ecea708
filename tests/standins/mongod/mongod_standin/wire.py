"""MongoDB wire protocol: OP_MSG, legacy OP_QUERY/OP_REPLY, and a small async client
used between members (heartbeats, votes, oplog pulls), authenticated with SCRAM."""
from __future__ import annotations

import asyncio
import itertools
import os
import struct

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from . import scram
from .errors import CommandError

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

MSG_CHECKSUM = 1 << 0
MSG_MORE_TO_COME = 1 << 1
MSG_EXHAUST_ALLOWED = 1 << 16

# UNSPECIFIED keeps binary subtypes 3 and 4 as they came: a document read and written back
# is byte-identical, as in the real server.
CODEC = CodecOptions(document_class=dict, uuid_representation=UuidRepresentation.UNSPECIFIED)
MAX_MESSAGE = 48_000_000

_ids = itertools.count(1)


def encode(doc) -> bytes:
    return bson.encode(doc, codec_options=CODEC)


def decode(data: bytes) -> dict:
    return bson.decode(data, codec_options=CODEC)


async def read_message(reader: asyncio.StreamReader):
    header = await reader.readexactly(16)
    length, request_id, response_to, opcode = struct.unpack("<iiii", header)
    if length < 16 or length > MAX_MESSAGE:
        raise ConnectionError(f"invalid message length {length}")
    body = await reader.readexactly(length - 16)
    return request_id, response_to, opcode, body


def _cstring(buf: bytes, pos: int):
    end = buf.index(b"\x00", pos)
    return buf[pos:end].decode(), end + 1


def parse_op_msg(body: bytes):
    flags, = struct.unpack_from("<I", body, 0)
    end = len(body) - (4 if flags & MSG_CHECKSUM else 0)
    pos = 4
    doc = None
    seqs: dict[str, list] = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            size, = struct.unpack_from("<i", body, pos)
            doc = decode(body[pos:pos + size])
            pos += size
        elif kind == 1:
            size, = struct.unpack_from("<i", body, pos)
            stop = pos + size
            ident, p = _cstring(body, pos + 4)
            items = []
            while p < stop:
                dsize, = struct.unpack_from("<i", body, p)
                items.append(decode(body[p:p + dsize]))
                p += dsize
            seqs.setdefault(ident, []).extend(items)
            pos = stop
        else:
            raise ConnectionError(f"unknown OP_MSG section kind {kind}")
    if doc is None:
        raise ConnectionError("OP_MSG without a body section")
    for k, v in seqs.items():
        doc[k] = v
    return flags, doc


def parse_op_query(body: bytes):
    flags, = struct.unpack_from("<i", body, 0)
    ns, pos = _cstring(body, 4)
    skip, nret = struct.unpack_from("<ii", body, pos)
    pos += 8
    size, = struct.unpack_from("<i", body, pos)
    query = decode(body[pos:pos + size])
    return flags, ns, skip, nret, query


def op_msg(doc: dict, response_to: int = 0, flags: int = 0) -> bytes:
    payload = struct.pack("<I", flags) + b"\x00" + encode(doc)
    return struct.pack("<iiii", 16 + len(payload), next(_ids), response_to, OP_MSG) + payload


def op_reply(doc: dict, response_to: int) -> bytes:
    d = encode(doc)
    payload = struct.pack("<iqii", 8, 0, 0, 1) + d  # flags: AwaitCapable
    return struct.pack("<iiii", 16 + len(payload), next(_ids), response_to, OP_REPLY) + payload


class PeerError(Exception):
    """A member could not be reached or refused us; the text is what MongoDB would log."""


class PeerClient:
    """One authenticated connection to another member, used by one task at a time."""

    def __init__(self, host: str, port: int, key: str, timeout: float = 5.0):
        self.host, self.port, self.key, self.timeout = host, port, key, timeout
        self.reader = self.writer = None
        self.lock = asyncio.Lock()

    @property
    def name(self):
        return f"{self.host}:{self.port}"

    async def _connect(self):
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(self.host, self.port, type=1)
        except OSError:
            raise PeerError(f"Could not find address for {self.name}: SocketException: Host not found (authoritative)")
        addr = infos[0][4][0]
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(addr, self.port), self.timeout)
        except asyncio.TimeoutError:
            raise PeerError(f"Error connecting to {self.name} ({addr}:{self.port}) :: caused by :: "
                            f"Socket operation timed out")
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise PeerError(f"Error connecting to {self.name} ({addr}:{self.port}) :: caused by :: {why}")
        if self.key is not None:
            try:
                await self._auth()
            except CommandError as e:
                self.close()
                raise PeerError(f"{e.errmsg}")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                self.close()
                raise PeerError(f"Error connecting to {self.name} :: caused by :: {e!r}")

    async def _auth(self):
        # Members prove the shared keyfile to each other as the internal user __system@local.
        conv = scram.ClientConversation("__system", self.key, "SCRAM-SHA-256")
        r = await self._raw_command("local", {"saslStart": 1, "mechanism": "SCRAM-SHA-256",
                                              "payload": conv.first(), "autoAuthorize": 1,
                                              "options": {"skipEmptyExchange": True}})
        r = await self._raw_command("local", {"saslContinue": 1, "conversationId": r["conversationId"],
                                              "payload": conv.final(bytes(r["payload"]))})
        conv.verify(bytes(r["payload"]))

    async def _raw_command(self, db: str, cmd: dict, timeout: float | None = None) -> dict:
        cmd = dict(cmd)
        cmd["$db"] = db
        self.writer.write(op_msg(cmd))
        await self.writer.drain()
        _, _, opcode, body = await asyncio.wait_for(read_message(self.reader), timeout or self.timeout)
        _, doc = parse_op_msg(body)
        if not doc.get("ok"):
            raise CommandError(doc.get("code", 8), doc.get("errmsg", "error"), doc.get("codeName"))
        return doc

    async def command(self, db: str, cmd: dict, timeout: float | None = None) -> dict:
        """Run a command; on any network failure drop the connection and raise PeerError."""
        async with self.lock:
            if self.writer is None:
                await self._connect()
            try:
                return await self._raw_command(db, cmd, timeout)
            except CommandError:
                raise
            except asyncio.TimeoutError:
                self.close()
                raise PeerError(f"Request to {self.name} timed out (ExceededTimeLimit)")
            except (OSError, asyncio.IncompleteReadError, ConnectionError) as e:
                self.close()
                raise PeerError(f"Connection to {self.name} lost: {e!r}")

    def close(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:
                pass
        self.reader = self.writer = None
