"""SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802/7677) as MongoDB stores and speaks them."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

ITERATIONS = {"SCRAM-SHA-1": 10000, "SCRAM-SHA-256": 15000}
_HASH = {"SCRAM-SHA-1": hashlib.sha1, "SCRAM-SHA-256": hashlib.sha256}


def saslprep(s: str) -> str:
    """RFC 4013 SASLprep, the parts that matter for passwords."""
    out = []
    for ch in s:
        if stringprep.in_table_c12(ch):
            out.append(" ")
        elif not stringprep.in_table_b1(ch):
            out.append(ch)
    s = unicodedata.normalize("NFKC", "".join(out))
    for ch in s:
        if (stringprep.in_table_c21_c22(ch) or stringprep.in_table_c3(ch) or stringprep.in_table_c4(ch)
                or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch) or stringprep.in_table_c7(ch)
                or stringprep.in_table_c8(ch) or stringprep.in_table_c9(ch)):
            raise ValueError("SASLprep: prohibited character")
    return s


def _password_input(mech: str, user: str, password: str) -> bytes:
    if mech == "SCRAM-SHA-1":
        # MongoDB's SCRAM-SHA-1 hashes the "MONGODB-CR" digest, not the password itself
        return hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest().encode()
    return saslprep(password).encode()


def _hmac(mech, key, msg):
    return hmac.new(key, msg, _HASH[mech]).digest()


def make_credentials(mech: str, user: str, password: str) -> dict:
    salt = os.urandom(16 if mech == "SCRAM-SHA-1" else 28)
    it = ITERATIONS[mech]
    salted = hashlib.pbkdf2_hmac(_HASH[mech]().name, _password_input(mech, user, password), salt, it)
    client_key = _hmac(mech, salted, b"Client Key")
    return {
        "iterationCount": it,
        "salt": base64.b64encode(salt).decode(),
        "storedKey": base64.b64encode(_HASH[mech](client_key).digest()).decode(),
        "serverKey": base64.b64encode(_hmac(mech, salted, b"Server Key")).decode(),
    }


def _parse(msg: str) -> dict:
    out = {}
    for part in msg.split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


def _unescape(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class ServerConversation:
    """One SCRAM exchange on the server side. `lookup(user) -> credentials|None`."""

    def __init__(self, mech: str, lookup):
        self.mech = mech
        self.lookup = lookup
        self.user = None
        self.done = False

    def start(self, payload: bytes) -> bytes:
        msg = payload.decode()
        if not msg.startswith(("n,", "y,")):
            raise ValueError("channel binding not supported")
        gs2_end = msg.index(",", msg.index(",") + 1) + 1
        self.client_first_bare = msg[gs2_end:]
        attrs = _parse(self.client_first_bare)
        self.user = _unescape(attrs["n"])
        self.cnonce = attrs["r"]
        self.creds = self.lookup(self.user)
        if self.creds is None:
            # answer like a real server would, with a random salt, and fail at the proof
            self.creds = make_credentials(self.mech, self.user, os.urandom(16).hex())
            self.unknown = True
        else:
            self.unknown = False
        self.nonce = self.cnonce + base64.b64encode(os.urandom(24)).decode()
        self.server_first = f"r={self.nonce},s={self.creds['salt']},i={self.creds['iterationCount']}"
        return self.server_first.encode()

    def finish(self, payload: bytes) -> bytes | None:
        """Return the server-final message, or None if the proof is wrong."""
        msg = payload.decode()
        attrs = _parse(msg)
        if attrs.get("r") != self.nonce or "p" not in attrs:
            return None
        without_proof = msg[:msg.rindex(",p=")]
        auth_msg = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        stored = base64.b64decode(self.creds["storedKey"])
        sig = _hmac(self.mech, stored, auth_msg)
        proof = base64.b64decode(attrs["p"])
        if len(proof) != len(sig):
            return None
        client_key = bytes(a ^ b for a, b in zip(proof, sig))
        if self.unknown or not hmac.compare_digest(_HASH[self.mech](client_key).digest(), stored):
            return None
        server_sig = _hmac(self.mech, base64.b64decode(self.creds["serverKey"]), auth_msg)
        self.done = True
        return f"v={base64.b64encode(server_sig).decode()}".encode()


class ClientConversation:
    def __init__(self, user: str, password: str, mech: str):
        self.user, self.password, self.mech = user, password, mech

    def first(self) -> bytes:
        self.cnonce = base64.b64encode(os.urandom(24)).decode()
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        self.client_first_bare = f"n={name},r={self.cnonce}"
        return ("n,," + self.client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        a = _parse(sf)
        if not a["r"].startswith(self.cnonce):
            raise ValueError("server nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(_HASH[self.mech]().name,
                                     _password_input(self.mech, self.user, self.password),
                                     base64.b64decode(a["s"]), int(a["i"]))
        client_key = _hmac(self.mech, salted, b"Client Key")
        stored = _HASH[self.mech](client_key).digest()
        without_proof = f"c=biws,r={a['r']}"
        auth_msg = f"{self.client_first_bare},{sf},{without_proof}".encode()
        sig = _hmac(self.mech, stored, auth_msg)
        proof = bytes(x ^ y for x, y in zip(client_key, sig))
        self.expected = _hmac(self.mech, _hmac(self.mech, salted, b"Server Key"), auth_msg)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes):
        a = _parse(server_final.decode())
        if base64.b64decode(a.get("v", "")) != self.expected:
            raise ValueError("server signature mismatch")
