"""The lab: Debian 12 hosts as systemd-nspawn containers, one network namespace each.

    lab = Lab(prefix="rl", subnet="198.18.16.0/23")
    lab.up()
    h = lab.boot_host("mongo1", user_data="#cloud-config\\n...")
    lab.exec("mongo1", ["systemctl", "is-system-running", "--wait"])
    lab.down()

All methods block; call them from asyncio with `asyncio.to_thread`. Everything a lab
owns lives under its workdir (host records, overlay upper dirs, logs) or carries its
prefix (interfaces, namespaces, iptables comments), so another process sees the same
hosts (`hosts()` reads the records) and `down()` cleans up after a crash or kill -9.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import image
from .errors import LabError

__all__ = ["Lab", "LabHost", "LabError"]
from .network import LAB_ROOT, Net, netns_pids, sh

log = logging.getLogger("wizard.lab")

DEFAULT_PREFIX = "rw"
DEFAULT_SUBNET = "198.18.0.0/23"
FIRST_HOST = 10

# tool -> Debian package that provides it
TOOLS = {
    "debootstrap": "debootstrap", "systemd-nspawn": "systemd-container", "iptables": "iptables",
    "zstd": "zstd", "nsenter": "util-linux", "ip": "iproute2", "mount": "mount", "tar": "tar",
}
HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
}
SUPERVISOR = Path(__file__).with_name("supervisor.py")


@dataclass
class LabHost:
    name: str
    public_ip: str
    private_ip: str
    machine_dir: Path
    pid: int | None  # the host's PID 1 as seen from the machine; None when stopped
    number: int = 0
    netns: str = ""
    instance_id: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def root(self) -> Path:
        """The host's file system (overlay mount) as seen from the machine."""
        return self.machine_dir / "root"


class Lab:
    def __init__(self, prefix: str = DEFAULT_PREFIX, subnet: str = DEFAULT_SUBNET,
                 workdir: str | Path | None = None):
        self.net = Net.of(prefix, subnet)
        self.prefix = prefix
        self.subnet = str(self.net.subnet)
        self.workdir = Path(workdir) if workdir else LAB_ROOT / prefix
        self.hosts_dir = self.workdir / "hosts"

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, subnet={self.subnet!r})"

    @property
    def gateway(self) -> str:
        """The machine's address on the public bridge (hosts' default gateway; the mirror listens here)."""
        return self.net.gateway

    # --- whole lab ------------------------------------------------------------------
    @staticmethod
    def check() -> None:
        """Raise LabError saying what to do if this machine cannot run the lab."""
        if platform.system() != "Linux":
            raise LabError("the lab needs Linux (systemd-nspawn, network namespaces)")
        if os.geteuid() != 0:
            raise LabError("the lab needs root: run as root (sudo rocket-wizard lab up)")
        missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
        if missing:
            raise LabError(f"missing tools for the lab: install them with\n    apt-get install -y {' '.join(missing)}")

    def up(self, mirror_root: str | Path | None = None, mirror_port: int = 8080) -> None:
        """Base image, bridges, NAT, ip_forward. Idempotent; safe from several processes."""
        self.check()
        rootfs = image.ensure_rootfs(log.info)
        with image.file_lock(self.workdir / "lock"):
            self.hosts_dir.mkdir(parents=True, exist_ok=True)
            self.net.bridges_up()
            self.net.nat_up()
            _write_json(self.workdir / "lab.json", {
                "prefix": self.prefix, "subnet": self.subnet, "rootfs": str(rootfs)})
        if mirror_root is not None:
            self.start_mirror(mirror_root, mirror_port)

    def is_up(self) -> bool:
        return self.net.bridges_exist() and (self.workdir / "lab.json").exists()

    def down(self) -> None:
        """Undo everything of this prefix, also after a crash. Safe to run again."""
        self.stop_mirror()
        names = [d.name for d in self.hosts_dir.iterdir()] if self.hosts_dir.is_dir() else []
        for name in names:
            self._signal_stop(name)
        deadline = time.monotonic() + 15
        for name in names:
            self._wait_stopped(name, max(0.5, deadline - time.monotonic()))
        self._kill_leftovers()
        self._swapoff_under(self.workdir)
        self._umount_under(self.workdir)
        for ns in self.net.leftover_netns():
            sh(["ip", "netns", "del", ns], check=False)
        links = self.net.leftover_links()
        for link in sorted(links, key=lambda n: n.endswith(("-pub", "-prv"))):  # veths first
            sh(["ip", "link", "del", link], check=False)
        self.net.nat_down()
        image.clean_stale()
        if self.workdir.exists():
            if any(m.startswith(str(self.workdir) + "/") for m in image.mounted()):
                raise LabError(f"something is still mounted under {self.workdir}; not deleting it")
            sh(["rm", "-rf", "--one-file-system", str(self.workdir)], check=False)

    def status(self) -> dict:
        hosts = self.hosts()
        return {
            "prefix": self.prefix, "subnet": self.subnet, "up": self.is_up(),
            "public": str(self.net.public), "private": str(self.net.private), "gateway": self.gateway,
            "bridges": [b for b in (self.net.pub_bridge, self.net.prv_bridge) if b in self.net.leftover_links()],
            "nat_rules": len(self.net.nat_rules()),
            "image": str(image.tarball_path()), "image_cached": image.tarball_path().exists(),
            "workdir": str(self.workdir),
            "mirror": self.mirror_status(),
            "hosts": [{"name": h.name, "public_ip": h.public_ip, "private_ip": h.private_ip,
                       "running": h.running, "pid": h.pid, "boots": _read_int(h.machine_dir / "boots")}
                      for h in hosts],
        }

    # --- hosts ----------------------------------------------------------------------
    def hosts(self) -> list[LabHost]:
        if not self.hosts_dir.is_dir():
            return []
        out = []
        for d in sorted(self.hosts_dir.iterdir()):
            h = self._load(d.name)
            if h:
                out.append(h)
        return sorted(out, key=lambda h: h.number)

    def host(self, name: str) -> LabHost:
        h = self._load(name)
        if h is None:
            raise LabError(f"no lab host {name!r} in lab {self.prefix}")
        return h

    def create_host(self, name: str, user_data: str | None = None, meta_data: dict | None = None,
                    public_ip: str | None = None, private_ip: str | None = None,
                    tags: list[str] | None = None) -> LabHost:
        """Record a host and write its cloud-init seed, without booting it. Idempotent:
        an existing host is returned unchanged (its seed is never rewritten)."""
        if not _valid_name(name):
            raise LabError(f"host name {name!r}: 1-63 lowercase letters, digits and '-'")
        if not self.is_up():
            raise LabError(f"lab {self.prefix} is not up: call lab.up() (or `rocket-wizard lab up`)")
        self._create_record(name, user_data, meta_data, public_ip, private_ip, tags)
        return self.host(name)

    def boot_host(self, name: str, user_data: str | None = None, meta_data: dict | None = None,
                  public_ip: str | None = None, private_ip: str | None = None,
                  timeout: float = 120, tags: list[str] | None = None) -> LabHost:
        """Create (or start again) a host and return once its sshd accepts TCP on port 22.

        The cloud-init NoCloud seed (user_data, meta_data) is written only when the host
        is created, like a droplet's user data. cloud-init may still be running on
        return: use wait_cloud_init()."""
        t0 = time.monotonic()
        self.create_host(name, user_data, meta_data, public_ip, private_ip, tags)
        d = self.hosts_dir / name
        rec = _read_json(d / "host.json")
        h = self._load(name)
        if h.running:
            return h
        self.net.host_up(name, rec["number"], rec["public_ip"], rec["private_ip"])
        self._mount(d)
        self._start_supervisor(d, rec)
        self._wait_ssh(h, t0 + timeout)
        rec["boot_seconds"] = round(time.monotonic() - t0, 2)
        _write_json(d / "host.json", rec)
        return self.host(name)

    def boot_hosts(self, names: list[str], user_data_for=None, meta_data_for=None,
                   timeout: float = 120) -> list[LabHost]:
        """Boot several hosts in parallel. user_data_for / meta_data_for: name -> value."""
        def one(n):
            return self.boot_host(n, user_data_for(n) if user_data_for else None,
                                  meta_data_for(n) if meta_data_for else None, timeout=timeout)
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return list(pool.map(one, names))

    def start_host(self, name: str, timeout: float = 120) -> LabHost:
        return self.boot_host(name, timeout=timeout)

    def exec(self, name: str, argv: list[str] | str, input: str | bytes | None = None,
             timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess:
        """Run argv as root inside the host (all its namespaces). A str runs under sh -c."""
        h = self.host(name)
        if not h.running:
            raise LabError(f"lab host {name} is not running")
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        text = not isinstance(input, bytes)
        p = subprocess.run(["nsenter", "-t", str(h.pid), "-a", "--", *argv], input=input,
                           capture_output=True, text=text, timeout=timeout, env=HOST_ENV)
        if check and p.returncode != 0:
            raise LabError(f"{name}: {' '.join(argv)} failed ({p.returncode}): {p.stderr or p.stdout}")
        return p

    def wait_cloud_init(self, name: str, timeout: float = 180) -> str:
        """Wait until cloud-init finished in the host; return its status ('done').

        Raises LabError (with cloud-init's detail) if it ended in error."""
        p = self.exec(name, ["cloud-init", "status", "--wait", "--long"], timeout=timeout)
        out = p.stdout.strip()
        status = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                       if line.startswith("status:")), "unknown")
        if status != "done":
            raise LabError(f"{name}: cloud-init ended with status {status} (rc {p.returncode}):\n{out}\n{p.stderr}")
        return status

    def reboot_host(self, name: str, timeout: float = 120) -> LabHost:
        """`systemctl reboot` inside the host; returns when sshd is back."""
        h = self.host(name)
        if not h.running:
            raise LabError(f"lab host {name} is not running")
        boots = self.boots(name)
        self.exec(name, ["systemctl", "reboot"], timeout=30)
        return self.wait_rebooted(name, boots, timeout)

    def boots(self, name: str) -> int:
        """How many times the host's systemd was started (1 after boot_host, +1 per reboot)."""
        return _read_int(self.hosts_dir / name / "boots") or 0

    def wait_rebooted(self, name: str, boots_before: int, timeout: float = 120) -> LabHost:
        """Wait until the host came back from a reboot (however it was triggered: over SSH,
        lab.exec) and sshd listens again. boots_before: lab.boots(name) before the reboot."""
        deadline = time.monotonic() + timeout
        d = self.hosts_dir / name
        while (_read_int(d / "boots") or 0) <= boots_before:
            if not _supervisor_alive(d):
                raise LabError(f"lab host {name} did not come back from reboot (nspawn exit "
                               f"{_read_int(d / 'exit')}); log: {d / 'nspawn.log'}\n{_tail(d / 'nspawn.log')}")
            if time.monotonic() > deadline:
                raise LabError(f"lab host {name}: reboot did not happen in time")
            time.sleep(0.1)
        h = self.host(name)
        self._wait_ssh(h, deadline)
        return self.host(name)

    def stop_host(self, name: str, timeout: float = 20) -> None:
        """Power the host off (orderly, then forced); its disk and addresses stay."""
        self.host(name)
        self._signal_stop(name)
        self._wait_stopped(name, timeout)

    def destroy_host(self, name: str) -> None:
        d = self.hosts_dir / name
        if not d.exists():
            return
        rec = _read_json(d / "host.json") or {}
        self._signal_stop(name)
        self._wait_stopped(name, 15)
        self._umount_under(d)
        self.net.host_down(name, rec.get("number"))
        if any(m.startswith(str(d) + "/") for m in image.mounted()):
            raise LabError(f"{d} still has mounts; not deleting it")
        sh(["rm", "-rf", "--one-file-system", str(d)], check=False)

    # --- mirror -----------------------------------------------------------------------
    def start_mirror(self, root: str | Path, port: int = 8080) -> str:
        """Serve root over HTTP on the public gateway; returns the base URL."""
        from . import mirror
        return mirror.start(self, Path(root), port)

    def stop_mirror(self) -> None:
        from . import mirror
        mirror.stop(self)

    def mirror_status(self) -> dict | None:
        from . import mirror
        return mirror.status(self)

    # --- internals ----------------------------------------------------------------------
    def _create_record(self, name, user_data, meta_data, public_ip, private_ip, tags) -> dict:
        d = self.hosts_dir / name
        with image.file_lock(self.workdir / "lock"):
            rec = _read_json(d / "host.json")
            if rec:
                return rec
            taken = {h.number for h in self.hosts()}
            if public_ip:
                number = self.net.number_of(public_ip)
                if number in taken:
                    raise LabError(f"{public_ip} is already used by another host of lab {self.prefix}")
            else:
                number = next(n for n in range(FIRST_HOST, 255) if n not in taken) if len(taken) < 245 else None
                if number is None:
                    raise LabError(f"lab {self.prefix} is full")
            rec = {
                "name": name, "number": number,
                "public_ip": public_ip or self.net.public_ip(number),
                "private_ip": private_ip or self.net.private_ip(number),
                "netns": self.net.netns(name), "machine": f"{self.prefix}-{name}",
                "instance_id": f"{self.prefix}-{name}-{uuid.uuid4().hex[:8]}",
                "created": time.time(), "tags": list(tags or []),
                # The lower dir this host's upper dir was made on: kept even if the image
                # recipe changes later (a new base under an old upper would mix two systems).
                "rootfs": (_read_json(self.workdir / "lab.json") or {}).get("rootfs"),
            }
            if private_ip and _ip_in(private_ip, self.net.private) is False:
                raise LabError(f"{private_ip} is not in this lab's private network {self.net.private}")
            for sub in ("upper", "work", "root"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            md = {"instance-id": rec["instance_id"], "local-hostname": name, "public-keys": []}
            md.update(meta_data or {})
            rec["instance_id"] = md["instance-id"]
            self._seed(d, name, user_data, md)
            _write_json(d / "host.json", rec)
            return rec

    def _seed(self, d: Path, name: str, user_data: str | None, md: dict) -> None:
        """Files written into the host's upper dir before its first boot."""
        up = d / "upper"
        seed = up / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        for p in (up / "var", up / "var/lib", up / "var/lib/cloud"):
            p.chmod(0o755)
        seed.chmod(0o700)
        seed.parent.chmod(0o700)
        _write_private(seed / "user-data", user_data if user_data is not None else "#cloud-config\n{}\n")
        _write_private(seed / "meta-data", json.dumps(md, indent=1) + "\n")  # JSON is YAML
        etc = up / "etc"
        etc.mkdir(exist_ok=True)
        etc.chmod(0o755)
        (etc / "hostname").write_text(name + "\n")
        # The machine's resolver, reached through NAT: apt inside the host works.
        (etc / "resolv.conf").write_text(Path("/etc/resolv.conf").read_text())

    def _mount(self, d: Path) -> None:
        root = d / "root"
        if str(root) in image.mounted():
            return
        rec = _read_json(d / "host.json") or {}
        lower = rec.get("rootfs") or (_read_json(self.workdir / "lab.json") or {}).get("rootfs")
        if not lower or not Path(lower, "etc/os-release").exists():
            lower = str(image.ensure_rootfs(log.info))
        sh(["mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lower},upperdir={d / 'upper'},workdir={d / 'work'}", str(root)])

    def _start_supervisor(self, d: Path, rec: dict) -> None:
        name = rec["name"]
        (d / "stop").unlink(missing_ok=True)
        argv = [
            "systemd-nspawn", "-b", "-D", str(d / "root"), "-M", rec["machine"], f"--hostname={name}",
            "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{rec['netns']}",
            "--console=read-only", "--capability=CAP_NET_ADMIN,CAP_NET_RAW",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        ]
        # ufw inside a host needs a writable /proc/sys/net (lab.md).
        _write_json(d / "nspawn.json", {"argv": argv, "env": {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}})
        if _supervisor_alive(d):
            return
        with open(d / "supervisor.log", "ab") as out:
            subprocess.Popen([sys.executable, str(SUPERVISOR), str(d)], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=out, start_new_session=True, close_fds=True, cwd="/")
        deadline = time.monotonic() + 10
        while not _supervisor_alive(d):
            if time.monotonic() > deadline:
                raise LabError(f"supervisor for {name} did not start: {_tail(d / 'supervisor.log')}")
            time.sleep(0.02)

    def _wait_ssh(self, h: LabHost, deadline: float) -> None:
        d = h.machine_dir
        # Probe from inside the host's own network namespace (loopback), not over its
        # public address: a hardened host's ufw `limit` on SSH rejects a source after 6
        # new connections in 30 s and keeps rejecting while the polling goes on.
        probe = ["nsenter", f"--net=/run/netns/{h.netns}", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22"]
        while True:
            try:
                if subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=2).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            if not _supervisor_alive(d):
                why = "stop requested" if (d / "stop").exists() else f"nspawn exit {_read_int(d / 'exit')}"
                raise LabError(f"lab host {h.name} stopped while booting ({why}); "
                               f"log {d / 'nspawn.log'}:\n{_tail(d / 'nspawn.log')}\n{_tail(d / 'supervisor.log')}")
            if time.monotonic() > deadline:
                raise LabError(f"lab host {h.name}: sshd not listening on {h.public_ip}:22 in time; "
                               f"log {d / 'nspawn.log'}:\n{_tail(d / 'nspawn.log')}")
            time.sleep(0.1)

    def _load(self, name: str) -> LabHost | None:
        d = self.hosts_dir / name
        rec = _read_json(d / "host.json")
        if not rec:
            return None
        return LabHost(name=rec["name"], public_ip=rec["public_ip"], private_ip=rec["private_ip"],
                       machine_dir=d, pid=_host_pid1(rec["netns"]) if _supervisor_alive(d) else None,
                       number=rec["number"], netns=rec["netns"], instance_id=rec.get("instance_id", ""),
                       tags=rec.get("tags", []))

    def _signal_stop(self, name: str) -> None:
        d = self.hosts_dir / name
        if not d.is_dir():
            return
        (d / "stop").touch()
        pid = _read_int(d / "nspawn.pid")
        if pid and _alive(pid):
            _kill(pid, signal.SIGTERM)

    def _wait_stopped(self, name: str, timeout: float) -> None:
        d = self.hosts_dir / name
        deadline = time.monotonic() + timeout
        while _supervisor_alive(d) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _supervisor_alive(d):
            log.warning("lab host %s did not stop in %.0f s: killing it", name, timeout)
            for f in ("nspawn.pid", "supervisor.pid"):
                pid = _read_int(d / f)
                if pid and _alive(pid):
                    _kill(pid, signal.SIGKILL)
        rec = _read_json(d / "host.json") or {}
        if rec.get("netns"):
            for pid in netns_pids(rec["netns"]):
                _kill(pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while _supervisor_alive(d) and time.monotonic() < end:
            time.sleep(0.05)

    def _kill_leftovers(self) -> None:
        """Processes of this lab that lost their records (crash, kill -9)."""
        mark = str(self.workdir) + "/"
        for pid in _pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.decode(errors="replace").startswith(mark) for a in cmd) and (
                    b"systemd-nspawn" in cmd[0]
                    or any(a.endswith((b"lab/supervisor.py", b"lab/mirror.py")) for a in cmd[:2])):
                _kill(pid, signal.SIGKILL)
        for ns in self.net.leftover_netns():
            for pid in netns_pids(ns):
                _kill(pid, signal.SIGKILL)
        time.sleep(0.2)

    @staticmethod
    def _swapoff_under(path: Path) -> None:
        try:
            lines = Path("/proc/swaps").read_text().splitlines()[1:]
        except OSError:
            return
        for line in lines:
            dev = line.split()[0]
            if dev.startswith(str(path) + "/"):
                sh(["swapoff", dev], check=False)

    @staticmethod
    def _umount_under(path: Path) -> None:
        mark = str(path) + "/"
        for _ in range(3):
            targets = sorted((m for m in image.mounted() if m.startswith(mark)), key=len, reverse=True)
            if not targets:
                return
            for t in targets:
                if sh(["umount", t], check=False).returncode != 0:
                    sh(["umount", "-l", t], check=False)


# --- small helpers ---------------------------------------------------------------------
def _valid_name(name: str) -> bool:
    import re
    return bool(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name))


def _ip_in(ip: str, net) -> bool:
    import ipaddress
    return ipaddress.ip_address(ip) in net


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _supervisor_alive(d: Path) -> bool:
    pid = _read_int(d / "supervisor.pid")
    if not pid or not _alive(pid):
        return False
    try:  # the pid file may be stale and the number reused
        return str(d).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _host_pid1(ns: str) -> int | None:
    """The host's init: the process in its netns that is PID 1 of its own PID namespace."""
    for pid in netns_pids(ns):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == "1":
                        return pid
        except OSError:
            continue
    return None


def asdict_host(h: LabHost) -> dict:
    d = asdict(h)
    d["machine_dir"] = str(h.machine_dir)
    return d
