# Runs ON a MongoDB host with nothing but python3's standard library (cloud images ship
# python3; neither pymongo nor mongosh is needed). It is a fact: it reads, never writes.
# Prints one JSON line: hello (unauthenticated), whether each given user can log in,
# and, when the admin can, the replica set status and the users that exist.
# CREDS (list of [user, db, password]) and PORT are prepended by recipes/mongodb.py.
import base64, hashlib, hmac, json, os, socket, struct

def enc(doc):
    out = b""
    for k, v in doc.items():
        kb = k.encode() + b"\0"
        if isinstance(v, bool):
            out += b"\x08" + kb + (b"\1" if v else b"\0")
        elif isinstance(v, int):
            out += (b"\x10" + kb + struct.pack("<i", v)) if -2**31 <= v < 2**31 else (b"\x12" + kb + struct.pack("<q", v))
        elif isinstance(v, float):
            out += b"\x01" + kb + struct.pack("<d", v)
        elif isinstance(v, str):
            s = v.encode() + b"\0"
            out += b"\x02" + kb + struct.pack("<i", len(s)) + s
        elif isinstance(v, bytes):
            out += b"\x05" + kb + struct.pack("<i", len(v)) + b"\0" + v
        elif isinstance(v, dict):
            out += b"\x03" + kb + enc(v)
        elif isinstance(v, list):
            out += b"\x04" + kb + enc({str(i): x for i, x in enumerate(v)})
        elif v is None:
            out += b"\x0a" + kb
    return struct.pack("<i", len(out) + 5) + out + b"\0"

def dec(b, pos=0, arr=False):
    size, = struct.unpack_from("<i", b, pos)
    end, pos, out = pos + size - 1, pos + 4, {}
    while pos < end:
        t = b[pos]; pos += 1
        k = b[pos:b.index(b"\0", pos)].decode(); pos += len(k.encode()) + 1
        if t == 1: v, = struct.unpack_from("<d", b, pos); pos += 8
        elif t == 2:
            n, = struct.unpack_from("<i", b, pos); v = b[pos + 4:pos + 3 + n].decode(); pos += 4 + n
        elif t in (3, 4):
            n, = struct.unpack_from("<i", b, pos); v = dec(b, pos, t == 4); pos += n
        elif t == 5:
            n, = struct.unpack_from("<i", b, pos); v = b[pos + 5:pos + 5 + n]; pos += 5 + n
        elif t == 7: v = b[pos:pos + 12].hex(); pos += 12
        elif t == 8: v = b[pos] == 1; pos += 1
        elif t == 9: v, = struct.unpack_from("<q", b, pos); v = v / 1000.0; pos += 8
        elif t == 10: v = None
        elif t == 16: v, = struct.unpack_from("<i", b, pos); pos += 4
        elif t == 17: inc, sec = struct.unpack_from("<II", b, pos); v = [sec, inc]; pos += 8
        elif t == 18: v, = struct.unpack_from("<q", b, pos); pos += 8
        elif t == 19: v = None; pos += 16
        else: raise ValueError("bson type %d" % t)
        out[k] = v
    return list(out.values()) if arr else out

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), 5)
        self.s.settimeout(10)
        self.rid = 0
    def recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c: raise ConnectionError("connection closed")
            b += c
        return b
    def cmd(self, db, doc):
        doc = dict(doc); doc["$db"] = db
        body = struct.pack("<I", 0) + b"\0" + enc(doc)
        self.rid += 1
        self.s.sendall(struct.pack("<iiii", 16 + len(body), self.rid, 0, 2013) + body)
        n, _, _, _ = struct.unpack("<iiii", self.recv(16))
        return dec(self.recv(n - 16), 5)
    def auth(self, user, db, pwd):
        cn = base64.b64encode(os.urandom(24)).decode()
        first = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), cn)
        r = self.cmd(db, {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": ("n,," + first).encode(),
                          "autoAuthorize": 1, "options": {"skipEmptyExchange": True}})
        if not r.get("ok"): return r.get("errmsg", "saslStart failed")
        sf = r["payload"].decode()
        a = dict(p.split("=", 1) for p in sf.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", pwd.encode(), base64.b64decode(a["s"]), int(a["i"]))
        ck = hmac.new(salted, b"Client Key", "sha256").digest()
        nop = "c=biws,r=" + a["r"]
        msg = ("%s,%s,%s" % (first, sf, nop)).encode()
        sig = hmac.new(hashlib.sha256(ck).digest(), msg, "sha256").digest()
        proof = base64.b64encode(bytes(x ^ y for x, y in zip(ck, sig))).decode()
        r = self.cmd(db, {"saslContinue": 1, "conversationId": r["conversationId"],
                          "payload": (nop + ",p=" + proof).encode()})
        if not r.get("ok"): return r.get("errmsg", "authentication failed")
        if not r.get("done"):
            r = self.cmd(db, {"saslContinue": 1, "conversationId": r["conversationId"], "payload": b""})
        return "ok" if r.get("ok") else r.get("errmsg", "authentication failed")

out = {"auth": {}}
try:
    c = Conn(PORT)
    h = c.cmd("admin", {"hello": 1})
    out["hello"] = {k: h.get(k) for k in ("setName", "isWritablePrimary", "secondary", "primary", "me",
                                          "hosts", "info", "setVersion")}
    for user, db, pwd in CREDS:
        c2 = Conn(PORT)
        res = c2.auth(user, db, pwd)
        out["auth"]["%s@%s" % (user, db)] = res
        if res == "ok" and user == CREDS[0][0] and db == CREDS[0][1]:
            st = c2.cmd("admin", {"replSetGetStatus": 1})
            if st.get("ok"):
                out["members"] = [{"name": m["name"], "state": m.get("stateStr"), "health": m.get("health"),
                                   "optime": (m.get("optimeDate") or 0)} for m in st["members"]]
            # usersInfo reads admin.system.users: a secondary answers only with a read preference
            ui = c2.cmd("admin", {"usersInfo": {"forAllDBs": True},
                                  "$readPreference": {"mode": "primaryPreferred"}})
            if not ui.get("ok"):
                out["users_error"] = ui.get("errmsg", "usersInfo failed")
            else:
                out["users"] = sorted("%s@%s %s" % (u["user"], u["db"], ",".join(sorted(
                    "%s@%s" % (r["role"], r["db"]) for r in u.get("roles", [])))) for u in ui["users"])
except Exception as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out, sort_keys=True))
