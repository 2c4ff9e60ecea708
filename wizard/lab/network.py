"""Bridges, network namespaces, veth pairs and NAT for one lab prefix.

Everything created here carries the prefix in its name (interfaces, namespaces) or in an
iptables comment, so teardown can find it from outside after a crash, and never touches
another lab's objects.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import LabError

LAB_ROOT = Path(os.environ.get("RW_LAB_ROOT", "/var/lib/rocket-wizard/lab"))
# Marker that some lab turned ip_forward on (so the last lab down may turn it off again).
FORWARD_MARKER = LAB_ROOT / ".ip_forward_set_by_lab"
ALLOWED = ipaddress.ip_network("198.18.0.0/15")
COMMENT = "rocket-wizard-lab:"
# Every host's systemd (no user namespaces) counts against root's inotify limits, which
# are machine-wide: at the default 128 instances, about 15 hosts in all labs make
# systemd fail with "Too many open files" (boot fails or units fail: degraded).
SYSCTLS = {"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}
SYSCTL_MARKER = LAB_ROOT / ".sysctls_raised_by_lab.json"


def sh(argv, check=True, input=None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(map(str, argv))} failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    return p


@dataclass(frozen=True)
class Net:
    prefix: str
    subnet: ipaddress.IPv4Network

    @classmethod
    def of(cls, prefix: str, subnet: str) -> "Net":
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise LabError(f"lab prefix {prefix!r}: use 1-8 lowercase letters/digits, starting with a letter "
                           "(interface names are limited to 15 characters)")
        try:
            net = ipaddress.ip_network(subnet)
        except ValueError as e:
            raise LabError(f"lab subnet {subnet!r}: {e}") from None
        if net.prefixlen != 23 or not net.subnet_of(ALLOWED):
            raise LabError(f"lab subnet {subnet}: must be a /23 inside {ALLOWED} (reserved for tests)")
        return cls(prefix, net)

    # --- names -----------------------------------------------------------------
    @property
    def pub_bridge(self) -> str:
        return f"{self.prefix}-pub"

    @property
    def prv_bridge(self) -> str:
        return f"{self.prefix}-prv"

    @property
    def public(self) -> ipaddress.IPv4Network:
        return list(self.subnet.subnets(new_prefix=24))[0]

    @property
    def private(self) -> ipaddress.IPv4Network:
        return list(self.subnet.subnets(new_prefix=24))[1]

    @property
    def gateway(self) -> str:
        return str(self.public.network_address + 1)

    @property
    def private_gateway(self) -> str:
        return str(self.private.network_address + 1)

    @property
    def comment(self) -> str:
        return COMMENT + self.prefix

    def netns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def veths(self, number: int) -> tuple[str, str]:
        return f"{self.prefix}{number}p", f"{self.prefix}{number}v"

    def public_ip(self, number: int) -> str:
        return str(self.public.network_address + number)

    def private_ip(self, number: int) -> str:
        return str(self.private.network_address + number)

    def number_of(self, public_ip: str) -> int:
        ip = ipaddress.ip_address(public_ip)
        if ip not in self.public:
            raise LabError(f"{public_ip} is not in this lab's public network {self.public}")
        n = int(ip) - int(self.public.network_address)
        if not 2 <= n <= 254:
            raise LabError(f"{public_ip}: host part must be 2..254")
        return n

    # --- bridges and NAT --------------------------------------------------------
    def bridges_up(self) -> None:
        for br, gw, net in ((self.pub_bridge, self.gateway, self.public),
                            (self.prv_bridge, self.private_gateway, self.private)):
            if not link_exists(br):
                _check_free(gw)
                sh(["ip", "link", "add", br, "type", "bridge"])
            addr = f"{gw}/{net.prefixlen}"
            if addr not in sh(["ip", "-o", "addr", "show", "dev", br]).stdout:
                sh(["ip", "addr", "add", addr, "dev", br])
            sh(["ip", "link", "set", br, "up"])

    def bridges_exist(self) -> bool:
        return link_exists(self.pub_bridge) and link_exists(self.prv_bridge)

    def nat_up(self) -> None:
        if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
            FORWARD_MARKER.parent.mkdir(parents=True, exist_ok=True)
            FORWARD_MARKER.write_text("1\n")
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        _raise_sysctls()
        c = ["-m", "comment", "--comment", self.comment]
        rules = [
            ("nat", "POSTROUTING", ["-s", str(self.public), "!", "-o", self.pub_bridge, "-j", "MASQUERADE"]),
            # Only matters where FORWARD's policy is DROP (e.g. Docker machines).
            ("filter", "FORWARD", ["-i", self.pub_bridge, "-j", "ACCEPT"]),
            ("filter", "FORWARD", ["-o", self.pub_bridge, "-j", "ACCEPT"]),
        ]
        for table, chain, spec in rules:
            if sh(["iptables", "-w", "-t", table, "-C", chain, *spec, *c], check=False).returncode != 0:
                op = "-A" if table == "nat" else "-I"
                sh(["iptables", "-w", "-t", table, op, chain, *spec, *c])

    def nat_rules(self) -> list[tuple[str, str]]:
        """(table, rule line) of every iptables rule carrying this lab's comment."""
        found = []
        for table in ("nat", "filter"):
            out = sh(["iptables", "-w", "-t", table, "-S"], check=False).stdout
            for line in out.splitlines():
                if _comment_of(line) == self.comment:
                    found.append((table, line))
        return found

    def nat_down(self) -> None:
        for table, line in self.nat_rules():
            argv = shlex.split(line)
            if argv and argv[0] == "-A":
                argv[0] = "-D"
                sh(["iptables", "-w", "-t", table, *argv], check=False)
        if FORWARD_MARKER.exists() and not _other_lab_rules(self.comment):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
            FORWARD_MARKER.unlink(missing_ok=True)
        if SYSCTL_MARKER.exists() and not _other_lab_rules(self.comment):
            _restore_sysctls()

    def bridges_down(self) -> None:
        for br in (self.pub_bridge, self.prv_bridge):
            if link_exists(br):
                sh(["ip", "link", "del", br], check=False)

    # --- per host -----------------------------------------------------------------
    def host_up(self, name: str, number: int, public_ip: str, private_ip: str) -> None:
        ns = self.netns(name)
        if ns not in netns_list():
            sh(["ip", "netns", "add", ns])
        for br, veth, peer, ip, net, gw in (
            (self.pub_bridge, self.veths(number)[0], "eth0", public_ip, self.public, self.gateway),
            (self.prv_bridge, self.veths(number)[1], "eth1", private_ip, self.private, None),
        ):
            if not link_exists(veth):
                sh(["ip", "netns", "exec", ns, "ip", "link", "del", peer], check=False)
                sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns])
            sh(["ip", "link", "set", veth, "master", br, "up"])
            addr = f"{ip}/{net.prefixlen}"
            if addr not in sh(["ip", "-n", ns, "-o", "addr", "show", "dev", peer]).stdout:
                sh(["ip", "-n", ns, "addr", "add", addr, "dev", peer])
            sh(["ip", "-n", ns, "link", "set", peer, "up"])
            if gw:
                sh(["ip", "-n", ns, "route", "replace", "default", "via", gw])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])

    def host_down(self, name: str, number: int | None) -> None:
        ns = self.netns(name)
        if ns in netns_list():
            sh(["ip", "netns", "del", ns], check=False)
        if number is not None:
            for veth in self.veths(number):
                if link_exists(veth):
                    sh(["ip", "link", "del", veth], check=False)

    def leftover_links(self) -> list[str]:
        pat = re.compile(rf"{re.escape(self.prefix)}(\d+[pv]|-pub|-prv)")
        return [n for n in all_links() if pat.fullmatch(n)]

    def leftover_netns(self) -> list[str]:
        return [n for n in netns_list() if n.startswith(self.prefix + "-")]


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def all_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def netns_pids(ns: str) -> list[int]:
    p = sh(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []


def _check_free(gw: str) -> None:
    out = sh(["ip", "-o", "-4", "addr", "show"]).stdout
    for line in out.splitlines():
        if f" {gw}/" in line:
            raise LabError(f"address {gw} is already used by interface {line.split()[1]}: "
                           "another lab has this subnet; pick another --subnet")


def _comment_of(line: str) -> str | None:
    try:
        argv = shlex.split(line)
    except ValueError:
        return None
    for i, a in enumerate(argv[:-1]):
        if a == "--comment":
            return argv[i + 1]
    return None


def _other_lab_rules(mine: str) -> bool:
    out = sh(["iptables", "-w", "-t", "nat", "-S"], check=False).stdout
    return any((c := _comment_of(line)) and c.startswith(COMMENT) and c != mine for line in out.splitlines())


def _raise_sysctls() -> None:
    try:
        saved = json.loads(SYSCTL_MARKER.read_text())
    except (OSError, ValueError):
        saved = {}
    changed = False
    for key, want in SYSCTLS.items():
        f = Path("/proc/sys", key)
        have = int(f.read_text())
        if have < want:
            saved.setdefault(key, have)
            f.write_text(f"{want}\n")
            changed = True
    if changed:
        SYSCTL_MARKER.parent.mkdir(parents=True, exist_ok=True)
        SYSCTL_MARKER.write_text(json.dumps(saved) + "\n")


def _restore_sysctls() -> None:
    try:
        saved = json.loads(SYSCTL_MARKER.read_text())
    except (OSError, ValueError):
        saved = {}
    for key, value in saved.items():
        try:
            Path("/proc/sys", key).write_text(f"{value}\n")
        except OSError:
            pass
    SYSCTL_MARKER.unlink(missing_ok=True)
