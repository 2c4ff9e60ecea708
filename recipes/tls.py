"""Let's Encrypt for the site: the domain check, certbot, renewal.

Replaces the runbook's root crontab with what certbot ships today: its systemd
timer renews, and a deploy hook reloads nginx (``nginx -t`` first). Certificates
come from the http-01 challenge through certbot's webroot mode, so certbot never
edits the nginx site (the wizard owns it and would put it back).

Before asking the CA, the domain must resolve to the web host's public address;
when it does not, the run stops and says so (``dns_offer`` tells the screens
whether the wizard can create the A record through DigitalOcean's domains API, which
``DigitalOceanProvider.ensure_a_record`` does).

``plan.acme_server`` (pebble in the lab) replaces Let's Encrypt's directory;
``plan.acme_ca_bundle`` is the CA that signs that server's own TLS, handed to
certbot as REQUESTS_CA_BUNDLE (also for the renewal timer). The resolver used for
the domain check is the system's, or ``RW_DNS_RESOLVER=ip[:port]`` (tests point
it at pebble-challtestsrv so they never query public DNS).
"""

from __future__ import annotations

import os
import random
import shlex
import socket
import struct
from dataclasses import dataclass

from wizard.engine import Change, Ctx, NoChange, Step, StepError
from wizard.ops import Cmd, Put

LE_DIR = "/etc/letsencrypt"
WEBROOT = "/var/www/letsencrypt"
CA_BUNDLE_PATH = "/etc/rocket-wizard/acme-ca.pem"
DEPLOY_HOOK = f"{LE_DIR}/renewal-hooks/deploy/50-reload-nginx"
CERTBOT_DROPIN = "/etc/systemd/system/certbot.service.d/rocket-wizard.conf"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"

DEPLOY_HOOK_SCRIPT = """#!/bin/sh
# Written by rocket-wizard: after a renewal, load the new certificate.
# nginx -t first: a broken configuration must not take the site down.
nginx -t -q && systemctl reload nginx
"""


def nginx_host(ctx: Ctx) -> bool:
    """nginx and the certificate live on the first web host (the one DNS points to)."""
    web = ctx.inventory.by_role("web")
    return bool(web) and ctx.host.name == web[0].name


class WebFrontStep(Step):
    roles = ("web",)

    def applies(self, ctx: Ctx) -> bool:
        return super().applies(ctx) and nginx_host(ctx)


# ---------------------------------------------------------------- DNS
class DNSError(Exception):
    pass


def _query(name: str, qtype: int = 1) -> tuple[int, bytes]:
    qid = random.randrange(1 << 16)
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)   # recursion desired
    qname = b"".join(bytes([len(p)]) + p.encode("idna") for p in name.rstrip(".").split(".")) + b"\0"
    return qid, head + qname + struct.pack(">HH", qtype, 1)


def _skip_name(msg: bytes, off: int) -> int:
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += n + 1


def parse_a(msg: bytes, qid: int) -> list[str]:
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid:
        raise DNSError("answer does not match the query")
    rcode = flags & 0xF
    if rcode == 3:
        return []                     # NXDOMAIN
    if rcode:
        raise DNSError(f"resolver answered rcode {rcode}")
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(msg[off:off + 4]))
        off += rdlen
    return out


def resolve_a(name: str, resolver: str | None = None, timeout: float = 3.0) -> list[str]:
    """IPv4 addresses of ``name``: from ``resolver`` ("ip" or "ip:port") when given,
    otherwise from the system's resolver."""
    resolver = resolver if resolver is not None else os.environ.get("RW_DNS_RESOLVER") or None
    if not resolver:
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
        except socket.gaierror:
            return []
        return sorted({i[4][0] for i in infos})
    host, _, port = resolver.partition(":")
    qid, packet = _query(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (host, int(port or 53)))
            msg, _ = s.recvfrom(4096)
        except OSError as e:
            raise DNSError(f"resolver {resolver} did not answer: {e}") from None
    return sorted(set(parse_a(msg, qid)))


@dataclass
class DnsOffer:
    """What to tell the operator when the domain does not point at the web host."""
    zone: str | None        # the DigitalOcean domain holding it, if any
    record: str             # the A record's name inside the zone ("chat", or "@")
    address: str


def dns_offer(domain: str, address: str, do_domains: list[str]) -> DnsOffer:
    """The longest DigitalOcean domain that ``domain`` lives in (None: not on DigitalOcean).

    When the operator accepts, the record is made by the DigitalOcean provider:
    ``provider.ensure_a_record(offer.zone, offer.record, offer.address)``.
    """
    zones = sorted((z for z in do_domains if domain == z or domain.endswith("." + z)), key=len, reverse=True)
    if not zones:
        return DnsOffer(None, domain, address)
    zone = zones[0]
    return DnsOffer(zone, "@" if domain == zone else domain[: -len(zone) - 1], address)


def dns_problem(domain: str, address: str, found: list[str]) -> str:
    if not found:
        return (f"{domain} does not resolve; create an A record {domain} -> {address} "
                "(the wizard can create it when the domain is on DigitalOcean), then run again")
    return (f"{domain} resolves to {', '.join(found)}, not to this web host's public address {address}; "
            f"point its A record at {address}, then run again (Let's Encrypt checks it from the internet)")


class DomainPoints(WebFrontStep):
    id = "tls.dns"
    title = "The domain resolves to the web host's public address"

    def check(self, ctx: Ctx):
        address = ctx.host.public_ip
        try:
            found = resolve_a(ctx.plan.domain)
        except DNSError as e:
            raise StepError(f"cannot check {ctx.plan.domain}: {e}") from None
        if address in found:
            return NoChange(f"{ctx.plan.domain} resolves to {address}")
        raise StepError(dns_problem(ctx.plan.domain, address, found))


# ---------------------------------------------------------------- certbot
def acme_server(plan) -> str:
    return plan.acme_server or LETS_ENCRYPT


def cert_facts(domain: str) -> str:
    live = f"{LE_DIR}/live/{domain}"
    return (f"test -f {live}/fullchain.pem && openssl x509 -noout -ext subjectAltName -enddate "
            f"-in {live}/cert.pem 2>/dev/null; echo; "
            f"grep -E '^server *=' {LE_DIR}/renewal/{domain}.conf 2>/dev/null; true")


class Certificate(WebFrontStep):
    id = "tls.certbot"
    title = "A certificate from Let's Encrypt (certbot, http-01 through the webroot)"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return {"tls_cert": cert_facts(ctx.plan.domain),
                "tls_ca_bundle": f"sha256sum {CA_BUNDLE_PATH} 2>/dev/null | cut -d' ' -f1; true"}

    def check(self, ctx: Ctx):
        plan = ctx.plan
        text = ctx.fact("tls_cert")
        server = acme_server(plan)
        have_cert = f"DNS:{plan.domain}" in text
        same_server = any(line.split("=", 1)[1].strip() == server
                          for line in text.splitlines() if line.startswith("server"))
        ops = []
        bundle = None
        if plan.acme_ca_bundle:
            bundle = plan.acme_ca_bundle.read_text()
            import hashlib
            if ctx.fact("tls_ca_bundle").strip() != hashlib.sha256(bundle.encode()).hexdigest():
                ops.append(Put(CA_BUNDLE_PATH, bundle, mode=0o644))
        if have_cert and same_server and not ops:
            return NoChange(f"certificate for {plan.domain} from {server}")
        if not (have_cert and same_server):
            env = f"REQUESTS_CA_BUNDLE={CA_BUNDLE_PATH} " if bundle else ""
            cmd = (f"mkdir -p {WEBROOT} && {env}certbot certonly --webroot -w {WEBROOT} "
                   f"-d {shlex.quote(plan.domain)} --cert-name {shlex.quote(plan.domain)} "
                   f"-n --agree-tos -m {shlex.quote(plan.admin_email)} --no-eff-email "
                   f"--server {shlex.quote(server)}")
            # A certificate from another CA (e.g. staging) is replaced now; otherwise keep
            # a valid one (a rerun after a failure must not burn the CA's rate limit).
            cmd += " --force-renewal" if have_cert else " --keep-until-expiring"
            ops.append(Cmd(cmd))
        what = f"certificate for {plan.domain} from {server}" if not (have_cert and same_server) \
            else "the ACME server's CA bundle"
        return Change(f"obtain {what}" if "certificate" in what else f"update {what}", ops)


class Renewal(WebFrontStep):
    id = "tls.renewal"
    title = "Renewal by certbot's timer; a deploy hook reloads nginx"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return {"tls_renewal": f"systemctl is-enabled certbot.timer 2>/dev/null; "
                               f"systemctl is-active certbot.timer 2>/dev/null; "
                               f"sha256sum {DEPLOY_HOOK} {CERTBOT_DROPIN} 2>/dev/null; "
                               f"stat -c '%a' {DEPLOY_HOOK} 2>/dev/null; true"}

    def dropin(self, ctx: Ctx) -> str | None:
        if not ctx.plan.acme_ca_bundle:
            return None
        return ("# Written by rocket-wizard: the ACME server's TLS is signed by this CA.\n"
                f"[Service]\nEnvironment=REQUESTS_CA_BUNDLE={CA_BUNDLE_PATH}\n")

    def check(self, ctx: Ctx):
        import hashlib
        text = ctx.fact("tls_renewal")
        lines = text.splitlines()
        sums = {p.split()[1]: p.split()[0] for p in lines if len(p.split()) == 2 and len(p.split()[0]) == 64}
        ops, what = [], []
        if sums.get(DEPLOY_HOOK) != hashlib.sha256(DEPLOY_HOOK_SCRIPT.encode()).hexdigest() \
                or "755" not in lines:
            ops.append(Put(DEPLOY_HOOK, DEPLOY_HOOK_SCRIPT, mode=0o755))
            what.append("deploy hook")
        dropin = self.dropin(ctx)
        if dropin and sums.get(CERTBOT_DROPIN) != hashlib.sha256(dropin.encode()).hexdigest():
            ops += [Put(CERTBOT_DROPIN, dropin), Cmd("systemctl daemon-reload")]
            what.append("certbot CA bundle drop-in")
        if not dropin and CERTBOT_DROPIN in sums:
            ops += [Cmd(f"rm -f {CERTBOT_DROPIN} && systemctl daemon-reload")]
            what.append("remove the certbot drop-in")
        if not (lines[:2] == ["enabled", "active"]):
            ops.append(Cmd("systemctl enable --now certbot.timer"))
            what.append("certbot.timer")
        if not ops:
            return NoChange("certbot.timer active; deploy hook reloads nginx")
        return Change("set up " + ", ".join(what), ops)


async def status_probe(deployment, runner, out) -> None:
    """Days until the certificate expires (certbot's timer renews it 30 days before)."""
    import calendar
    import time
    for host in runner.inventory.by_role("web"):
        if not host.ready:
            continue
        res = await runner.connection(host).run(
            f"openssl x509 -noout -enddate -in {LE_DIR}/live/{runner.plan.domain}/cert.pem 2>/dev/null",
            check=False, stream=False)
        _, _, when = res.stdout.strip().partition("notAfter=")
        if not when:
            continue
        # "Mar  3 15:00:00 2027 GMT": openssl always prints UTC
        end = calendar.timegm(time.strptime(" ".join(when.split()), "%b %d %H:%M:%S %Y %Z"))
        days = int((end - time.time()) // 86400)
        out.cert_days_left = days if out.cert_days_left is None else min(out.cert_days_left, days)
