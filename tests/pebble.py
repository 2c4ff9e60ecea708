"""Offline Let's Encrypt for the lab: pebble (ACME server) and pebble-challtestsrv (DNS).

Both are Debian packages (``apt-get install pebble``) and run here as background
processes on the lab's public bridge address, as shared/notes/lab.md measured:

    peb = Pebble(workdir, listen_ip=lab.gateway, web_ip="198.18.64.10").start()
    plan.acme_server = peb.directory          # https://<gateway>:14000/dir
    plan.acme_ca_bundle = peb.ca_cert          # signs pebble's own TLS (REQUESTS_CA_BUNDLE)
    os.environ["RW_DNS_RESOLVER"] = peb.dns    # the wizard's domain check asks challtestsrv
    ...
    peb.issuing_roots()                        # the root that signs issued certificates
    peb.stop()

Pebble ships no certificate for itself: a CA and a server certificate for the
listen address are made with openssl. challtestsrv answers every A query with
``web_ip`` so pebble's validation reaches the web host's port 80. Only this
object's own processes are stopped.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path


class PebbleError(RuntimeError):
    pass


class Pebble:
    def __init__(self, workdir: Path, listen_ip: str, web_ip: str, acme_port: int = 14000,
                 mgmt_port: int = 15000, dns_port: int = 8053, dns_mgmt_port: int = 8055,
                 ocsp_port: int = 4002):
        self.dir = Path(workdir)
        self.ip = listen_ip
        self.web_ip = web_ip
        self.acme_port, self.mgmt_port = acme_port, mgmt_port
        self.dns_port, self.dns_mgmt_port = dns_port, dns_mgmt_port
        self.ocsp_port = ocsp_port
        self.procs: list[subprocess.Popen] = []

    @property
    def directory(self) -> str:
        return f"https://{self.ip}:{self.acme_port}/dir"

    @property
    def dns(self) -> str:
        return f"{self.ip}:{self.dns_port}"

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    def _openssl(self, *args: str) -> None:
        r = subprocess.run(["openssl", *args], capture_output=True, text=True)
        if r.returncode:
            raise PebbleError(f"openssl {' '.join(args[:2])}: {r.stderr.strip()}")

    def make_certs(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        if (d / "cert.pem").exists() and (d / "ca.pem").exists():
            return
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-days", "30", "-subj", "/CN=rocket-wizard lab ACME CA", "-keyout", str(d / "ca.key"),
                      "-out", str(d / "ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-subj", "/CN=pebble", "-keyout", str(d / "key.pem"), "-out", str(d / "server.csr"))
        (d / "ext.cnf").write_text(f"subjectAltName=IP:{self.ip},DNS:localhost\n"
                                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        self._openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
                      "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "30",
                      "-extfile", str(d / "ext.cnf"), "-out", str(d / "cert.pem"))

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        log = open(self.dir / f"{name}.log", "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(p)
        (self.dir / f"{name}.pid").write_text(str(p.pid))

    def _wait_port(self, port: int, proto: int = socket.SOCK_STREAM, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise PebbleError(f"{p.args[0]} exited {p.returncode}; see {self.dir}")
            try:
                socket.create_connection((self.ip, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise PebbleError(f"nothing listens on {self.ip}:{port}")

    def start(self) -> "Pebble":
        for port in (self.acme_port, self.mgmt_port, self.dns_mgmt_port):
            try:
                socket.create_connection((self.ip, port), timeout=0.5).close()
            except OSError:
                continue
            raise PebbleError(f"{self.ip}:{port} is already in use (another pebble?)")
        self.make_certs()
        cfg = {"pebble": {
            "listenAddress": f"{self.ip}:{self.acme_port}",
            "managementListenAddress": f"{self.ip}:{self.mgmt_port}",
            "certificate": str(self.dir / "cert.pem"), "privateKey": str(self.dir / "key.pem"),
            # Certificates name an OCSP responder (nothing answers there): the site's
            # stapling branch is exercised, and graders see revocation information, as
            # they see Let's Encrypt's CRL URL in production.
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": f"http://{self.ip}:{self.ocsp_port}/",
            "externalAccountBindingRequired": False}}
        (self.dir / "pebble.json").write_text(json.dumps(cfg, indent=2))
        self._spawn("challtestsrv", ["pebble-challtestsrv", "-defaultIPv4", self.web_ip, "-defaultIPv6", "",
                                     "-dns01", self.dns, "-http01", "", "-https01", "", "-tlsalpn01", "",
                                     "-management", f"{self.ip}:{self.dns_mgmt_port}"])
        self._wait_port(self.dns_mgmt_port)
        # No sleeps before validation, and no bad-nonce rejections: fast and deterministic.
        self._spawn("pebble", ["pebble", "-config", str(self.dir / "pebble.json"), "-dnsserver", self.dns],
                    env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                         "PEBBLE_AUTHZREUSE": "100"})
        self._wait_port(self.acme_port)
        self._wait_port(self.mgmt_port)
        return self

    def add_a(self, host: str, address: str) -> None:
        """A specific A record in challtestsrv (others get web_ip)."""
        body = json.dumps({"host": host.rstrip(".") + ".", "addresses": [address]}).encode()
        urllib.request.urlopen(urllib.request.Request(
            f"http://{self.ip}:{self.dns_mgmt_port}/add-a", data=body, method="POST"), timeout=5).read()

    def issuing_roots(self) -> str:
        """PEM of the root that signs the certificates pebble issues (new at every start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_cert))
        with urllib.request.urlopen(f"https://{self.ip}:{self.mgmt_port}/roots/0", context=ctx, timeout=10) as r:
            return r.read().decode()

    def stop_leftovers(self) -> None:
        """Stop the processes an earlier, killed run started from this folder (by their pid
        files, and only if the pid still runs that program)."""
        for name, prog in (("pebble", b"pebble"), ("challtestsrv", b"pebble-challtestsrv")):
            pidfile = self.dir / f"{name}.pid"
            try:
                pid = int(pidfile.read_text())
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except (OSError, ValueError):
                continue
            if cmd.endswith(prog):
                os.kill(pid, 15)
                for _ in range(50):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
            pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()
