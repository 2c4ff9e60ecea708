"""nginx in front of the Rocket.Chat instances, with TLS (the "web" phase).

What changed since the runbook (shared/notes/facts.md): ``proxy_pass http://``
(the instances speak plain HTTP), ``X-Forwarded-For``/``X-Forwarded-Proto``
spelled right, websocket upgrade headers, one upstream of every instance with
``ip_hash`` (sticky for the XHR fallback), http -> https, Mozilla's intermediate
TLS profile (1.2 and 1.3 only), HSTS, and OCSP stapling only when the
certificate names an OCSP responder (Let's Encrypt stopped OCSP in 2025).

Every change is tested with ``nginx -t`` before it is loaded, and loaded with a
reload (no dropped connections), never a restart. A file that fails the test is
put back as it was.

Order: packages -> a plain-HTTP site that answers ACME challenges (only until a
certificate exists) -> the domain check, certbot and renewal (recipes.tls) ->
the TLS site.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from string import Template

from recipes import tls
from recipes.rocketchat import bind_ip
from wizard.engine import Change, Ctx, NoChange, Phase
from wizard.ops import Cmd, Put

TEMPLATES = Path(__file__).with_name("templates")
SITE = "/etc/nginx/sites-available/rocketchat"
ENABLED = "/etc/nginx/sites-enabled/rocketchat"
DHPARAM = "/etc/nginx/ffdhe2048.pem"
PACKAGES = ("nginx", "certbot")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upstream_servers(plan, inventory) -> list[str]:
    out = []
    for host in inventory.by_role("web"):
        for port in plan.ports():
            out.append(f"{bind_ip(plan, host)}:{port}")
    return out


def render_site(plan, inventory, ocsp_uri: str = "") -> str:
    servers = "\n".join(f"    server {s} max_fails=3 fail_timeout=10s;"
                        for s in upstream_servers(plan, inventory))
    if ocsp_uri:
        ocsp = (f"    # The certificate names an OCSP responder ({ocsp_uri}): staple its answer.\n"
                "    ssl_stapling on;\n    ssl_stapling_verify on;\n"
                f"    ssl_trusted_certificate /etc/letsencrypt/live/{plan.domain}/chain.pem;\n")
    else:
        ocsp = "    # No OCSP stapling: the certificate names no OCSP responder.\n"
    return Template((TEMPLATES / "nginx-site.conf.tmpl").read_text()).substitute(
        domain=plan.domain, upstream_servers=servers, ocsp=ocsp)


def render_acme_site(plan) -> str:
    return Template((TEMPLATES / "nginx-site-acme.conf.tmpl").read_text()).substitute(domain=plan.domain)


def install_site(content: str, extra: list = ()) -> list:
    """Write the site, test, roll back the file if the test fails, reload (or start)."""
    return [
        Cmd(f"[ -f {SITE} ] && cp -p {SITE} {SITE}.rw-previous || rm -f {SITE}.rw-previous"),
        *extra,
        Put(SITE, content),
        Cmd(f"ln -sfn {SITE} {ENABLED} && rm -f /etc/nginx/sites-enabled/default\n"
            f"if ! nginx -t -q; then\n"
            f"  nginx -t 2>&1 | tail -5 >&2\n"
            f"  if [ -f {SITE}.rw-previous ]; then mv -f {SITE}.rw-previous {SITE}; fi\n"
            f"  exit 1\n"
            f"fi\n"
            f"rm -f {SITE}.rw-previous\n"
            f"if systemctl is-active --quiet nginx; then systemctl reload nginx; "
            f"else systemctl enable --quiet nginx && systemctl start nginx; fi"),
    ]


SITE_FACTS = (f"sha256sum {SITE} {DHPARAM} 2>/dev/null; echo enabled $(readlink {ENABLED}); "
              "echo others $(ls /etc/nginx/sites-enabled/ 2>/dev/null | grep -x default); "
              "echo nginx $(systemctl is-active nginx 2>/dev/null); true")


def parse_site_facts(text: str) -> dict:
    out = {"sums": {}, "enabled": "", "others": "", "nginx": ""}
    for line in text.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 64:
            out["sums"][parts[1]] = parts[0]
        elif parts and parts[0] in ("enabled", "others", "nginx"):
            out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


class Packages(tls.WebFrontStep):
    id = "web.packages"
    title = "nginx and certbot from the distribution"
    facts = {"web_pkgs": "dpkg-query -W -f='${Package} ${Status}\\n' " + " ".join(PACKAGES) + " 2>/dev/null; true"}

    def check(self, ctx: Ctx):
        installed = {line.split()[0] for line in ctx.fact("web_pkgs").splitlines()
                     if line.endswith("install ok installed")}
        missing = [p for p in PACKAGES if p not in installed]
        if not missing:
            return NoChange("nginx and certbot installed")
        pkgs = " ".join(missing)
        return Change(f"install {pkgs}", [Cmd(
            "export DEBIAN_FRONTEND=noninteractive\n"
            f"apt-get install -y --no-install-recommends {pkgs} || "
            f"{{ apt-get update -q && apt-get install -y --no-install-recommends {pkgs}; }}")])


class AcmeSite(tls.WebFrontStep):
    id = "web.acme_site"
    title = "Until a certificate exists: a plain-HTTP site for ACME challenges"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        return {"web_site": SITE_FACTS,
                "web_has_cert": f"test -f {tls.LE_DIR}/live/{ctx.plan.domain}/fullchain.pem && echo yes; true"}

    def check(self, ctx: Ctx):
        if ctx.fact("web_has_cert").strip() == "yes":
            return NoChange("certificate present: the TLS site is managed by web.site")
        f = parse_site_facts(ctx.fact("web_site"))
        content = render_acme_site(ctx.plan)
        if f["sums"].get(SITE) == _sha(content) and f["enabled"] == SITE and f["nginx"] == "active" \
                and not f["others"]:
            return NoChange("ACME challenge site active")
        return Change("serve ACME challenges over plain HTTP",
                      install_site(content, [Cmd(f"mkdir -p {tls.WEBROOT}")]))


class Site(tls.WebFrontStep):
    id = "web.site"
    title = "The TLS site: upstream of every instance (ip_hash), websockets, HSTS"

    def fact_commands(self, ctx: Ctx) -> dict[str, str]:
        live = f"{tls.LE_DIR}/live/{ctx.plan.domain}"
        return {"web_site": SITE_FACTS,
                "web_ocsp": f"openssl x509 -noout -ocsp_uri -in {live}/cert.pem 2>/dev/null; true"}

    def check(self, ctx: Ctx):
        f = parse_site_facts(ctx.fact("web_site"))
        ocsp = ctx.fact("web_ocsp").strip().splitlines()
        content = render_site(ctx.plan, ctx.inventory, ocsp[0] if ocsp else "")
        dh = (TEMPLATES / "ffdhe2048.pem").read_text()
        if f["sums"].get(SITE) == _sha(content) and f["sums"].get(DHPARAM) == _sha(dh) \
                and f["enabled"] == SITE and f["nginx"] == "active" and not f["others"]:
            return NoChange(f"site for {ctx.plan.domain} as planned, nginx active")
        extra = [] if f["sums"].get(DHPARAM) == _sha(dh) else [Put(DHPARAM, dh)]
        return Change(f"write the TLS site for {ctx.plan.domain} (nginx -t, reload)", install_site(content, extra))


PHASE = Phase("web", "nginx and TLS (Let's Encrypt)", [
    Packages(), AcmeSite(), tls.DomainPoints(), tls.Certificate(), tls.Renewal(), Site(),
])
