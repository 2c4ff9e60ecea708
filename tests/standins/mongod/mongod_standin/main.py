"""Command line, /etc/mongod.conf, startup checks with mongod's messages and exit codes."""
from __future__ import annotations

import argparse
import asyncio
import datetime
import fcntl
import json
import os
import signal
import socket
import stat
import sys

import yaml

try:
    from .version import VERSION
except ImportError:  # running from the source tree
    VERSION = os.environ.get("MONGOD_STANDIN_VERSION", "8.0.4")

# mongod's exit codes (src/mongo/util/exit_code.h)
EXIT_CLEAN, EXIT_FAILURE, EXIT_BADOPTIONS, EXIT_NET_ERROR, EXIT_DBPATH = 0, 1, 2, 48, 100

KNOWN_OPTIONS = {
    "storage.dbPath", "storage.directoryPerDB", "storage.engine", "storage.wiredTiger",
    "storage.syncPeriodSecs", "storage.oplogMinRetentionHours",
    "systemLog.destination", "systemLog.path", "systemLog.logAppend", "systemLog.logRotate",
    "systemLog.verbosity", "systemLog.quiet", "systemLog.timeStampFormat", "systemLog.component",
    "net.port", "net.bindIp", "net.bindIpAll", "net.ipv6", "net.maxIncomingConnections", "net.tls",
    "net.compression", "net.unixDomainSocket",
    "replication.replSetName", "replication.oplogSizeMB", "replication.enableMajorityReadConcern",
    "security.keyFile", "security.authorization", "security.clusterAuthMode", "security.javascriptEnabled",
    "security.transitionToAuth",
    "processManagement.timeZoneInfo", "processManagement.fork", "processManagement.pidFilePath",
    "operationProfiling", "setParameter", "sharding.clusterRole", "cloud", "auditLog",
}


class Logger:
    """mongod 4.4+ structured log lines, to systemLog.path or stdout."""

    def __init__(self):
        self.fh = None

    def open(self, path):
        if path:
            self.fh = open(path, "a", buffering=1)

    def __call__(self, sev, comp, lid, msg, attr=None, ctx="conn", also_stderr=False):
        now = datetime.datetime.now().astimezone()
        line = json.dumps({"t": {"$date": now.isoformat(timespec="milliseconds")}, "s": sev, "c": comp,
                           "id": lid, "ctx": ctx, "msg": msg, **({"attr": attr} if attr else {})},
                          default=str)
        if self.fh:
            self.fh.write(line + "\n")
        if self.fh is None or also_stderr:
            print(line, file=sys.stderr if also_stderr else sys.stdout, flush=True)


def flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in ("setParameter", "storage.wiredTiger", "net.tls",
                                               "systemLog.component", "operationProfiling", "cloud",
                                               "auditLog", "net.compression", "net.unixDomainSocket"):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(prog="mongod", add_help=True)
    p.add_argument("-f", "--config")
    p.add_argument("--port", type=int)
    p.add_argument("--bind_ip")
    p.add_argument("--bind_ip_all", action="store_true")
    p.add_argument("--dbpath")
    p.add_argument("--replSet")
    p.add_argument("--keyFile")
    p.add_argument("--auth", action="store_true")
    p.add_argument("--logpath")
    p.add_argument("--logappend", action="store_true")
    p.add_argument("--fork", action="store_true")
    p.add_argument("--version", action="store_true")
    return p.parse_args(argv)


def fail(log, comp, lid, msg, attr, code):
    log("F" if code != EXIT_FAILURE else "E", comp, lid, msg, attr, ctx="initandlisten", also_stderr=True)
    log("I", "CONTROL", 20565, "Now exiting", ctx="initandlisten")
    log("I", "CONTROL", 23138, "Shutting down", {"exitCode": code}, ctx="initandlisten")
    return code


def read_keyfile(path):
    """Return (key, error message) exactly as mongod's readSecurityFile words them."""
    try:
        st = os.stat(path)
    except OSError as e:
        return None, f"error getting file {path}: {e.strerror}"
    if stat.S_IMODE(st.st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
        return None, f"permissions on {path} are too open"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None, f"error opening file: {path}: bad file"
    text = raw.decode("latin-1")
    key = "".join(text.split())
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for ch in key:
        if ch not in allowed:
            return None, f"invalid char in key file {path}: {text!r}"
    if len(key) < 6:
        return None, f"security key in {path} has length {len(key)}, must be between 6 and 1024 chars"
    if len(key) > 1024:
        return None, f"security key in {path} has length {len(key)}, must be between 6 and 1024 chars"
    return key, None


def resolve_bind(spec: str):
    out = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        if part == "localhost":
            out.append("127.0.0.1")
            continue
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in part else socket.AF_INET, part)
            out.append(part)
        except OSError:
            out.append(socket.getaddrinfo(part, None, socket.AF_INET)[0][4][0])
    return list(dict.fromkeys(out))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.version:
        print(f"db version v{VERSION}\nBuild Info: {{\n    \"version\": \"{VERSION}\",\n"
              f"    \"gitVersion\": \"rocket-wizard-standin\",\n    \"modules\": [],\n"
              f"    \"environment\": {{\n        \"distarch\": \"x86_64\",\n        \"target_arch\": \"x86_64\"\n    }}\n}}")
        return 0
    log = Logger()
    conf = {}
    if args.config:
        try:
            with open(args.config) as f:
                conf = yaml.safe_load(f) or {}
        except OSError as e:
            print(f"Error reading config file: {e.strerror}", file=sys.stderr)
            return EXIT_BADOPTIONS
        except yaml.YAMLError as e:
            print(f"Error parsing YAML config file: {e}", file=sys.stderr)
            return EXIT_BADOPTIONS
    flat = flatten(conf)
    for k in flat:
        if k not in KNOWN_OPTIONS and not any(k.startswith(p + ".") for p in KNOWN_OPTIONS):
            print(f"Unrecognized option: {k}", file=sys.stderr)
            print("try '/usr/bin/mongod --help' for more information", file=sys.stderr)
            return EXIT_BADOPTIONS
    log_path = args.logpath or (flat.get("systemLog.path") if flat.get("systemLog.destination") == "file" else None)
    if log_path:
        try:
            log.open(log_path)
        except OSError as e:
            print(f"Failed to open {log_path}: {e.strerror}", file=sys.stderr)
            return EXIT_FAILURE
    dbpath = args.dbpath or flat.get("storage.dbPath") or "/data/db"
    port = args.port or int(flat.get("net.port") or 27017)
    bind_all = args.bind_ip_all or bool(flat.get("net.bindIpAll"))
    bind_spec = args.bind_ip or str(flat.get("net.bindIp") or "localhost")
    replset = args.replSet or flat.get("replication.replSetName")
    keyfile = args.keyFile or flat.get("security.keyFile")
    authz = args.auth or flat.get("security.authorization") == "enabled"
    log("I", "CONTROL", 4615611, "MongoDB starting",
        {"pid": os.getpid(), "port": port, "dbPath": dbpath, "architecture": "64-bit",
         "host": socket.gethostname()}, ctx="initandlisten")
    log("I", "CONTROL", 23403, "Build Info", {"buildInfo": {"version": VERSION, "gitVersion": "rocket-wizard-standin"}},
        ctx="initandlisten")
    log("I", "CONTROL", 21951, "Options set by command line",
        {"options": conf if args.config else vars(args)}, ctx="initandlisten")
    key = None
    if keyfile:
        key, err = read_keyfile(keyfile)
        if err:
            return fail(log, "ACCESS", 20254, "Read security file failed",
                        {"error": {"code": 30, "codeName": "InvalidPath", "errmsg": err}}, EXIT_FAILURE)
    if not os.path.isdir(dbpath):
        return fail(log, "STORAGE", 22214, "Data directory not found",
                    {"error": {"code": 29, "codeName": "NonExistentPath",
                               "errmsg": f"Data directory {dbpath} not found. Create the missing directory or specify "
                                         f"another path using (1) the --dbpath command line option, or (2) by adding "
                                         f"the 'storage.dbPath' option in the configuration file."}}, EXIT_DBPATH)
    lock_path = os.path.join(dbpath, "mongod.lock")
    try:
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        return fail(log, "STORAGE", 20557, "DBException in initAndListen, terminating",
                    {"error": f"IllegalOperation: Attempted to create a lock file on a read-only directory: {dbpath}"
                              if e.errno == 30 else f"Unable to create/open the lock file: {lock_path} ({e.strerror})."},
                    EXIT_DBPATH)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return fail(log, "STORAGE", 20557, "DBException in initAndListen, terminating",
                    {"error": f"DBPathInUse: Unable to lock the lock file: {lock_path} (Resource temporarily "
                              f"unavailable). Another mongod instance is already running on the {dbpath} directory"},
                    EXIT_DBPATH)
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())
    try:
        bind = ["0.0.0.0"] if bind_all else resolve_bind(bind_spec)
    except OSError as e:
        return fail(log, "NETWORK", 23024, "Failed to set up listener",
                    {"error": {"code": 9001, "codeName": "SocketException", "errmsg": str(e)}}, EXIT_NET_ERROR)
    cfg = {"dbpath": dbpath, "port": port, "bind": bind, "replset": replset, "key": key,
           "authorization": authz, "argv": ["/usr/bin/mongod"] + argv, "parsed": conf}
    return asyncio.run(_run(cfg, log))


async def _run(cfg, log):
    from .server import Server
    srv = Server(cfg, log, VERSION)
    try:
        await srv.start()
    except OSError as e:
        log("E", "NETWORK", 23024, "Failed to set up listener",
            {"error": {"code": 9001, "codeName": "SocketException", "errmsg": e.strerror or str(e)}},
            ctx="initandlisten", also_stderr=True)
        log("I", "CONTROL", 23138, "Shutting down", {"exitCode": EXIT_NET_ERROR}, ctx="initandlisten")
        return EXIT_NET_ERROR
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log("I", "CONTROL", 23377, "Received signal", {"signal": 15, "error": "Terminated"}, ctx="SignalHandler")
    await srv.stop()
    log("I", "CONTROL", 23138, "Shutting down", {"exitCode": 0}, ctx="SignalHandler")
    return EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
