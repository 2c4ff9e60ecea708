"""Host keys made on the operator's machine, so the first SSH contact is verified.

DigitalOcean cannot tell us a new droplet's host key over a trusted channel, so we
choose it: the wizard generates an ed25519 key per host, passes the private half in
cloud-init user data (``ssh_keys``), keeps the private half in the secrets file and
pins the public half in the state. The first connection then accepts exactly that
key and nothing else.
"""

from __future__ import annotations

import asyncssh


def generate() -> tuple[str, str]:
    """(private key in OpenSSH format, public key line)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="rocket-wizard host key")
    return key.export_private_key("openssh").decode(), key.export_public_key("openssh").decode().strip()


def public_of(private: str) -> str:
    return asyncssh.import_private_key(private).export_public_key("openssh").decode().strip()


def fingerprint(public: str) -> str:
    return asyncssh.import_public_key(public).get_fingerprint("sha256")
