"""Cloud-init user data for a new host.

Only what must be true before the first SSH login goes here: the pinned host key
(the wizard's own, see hostkeys.py) and root login by key, which DigitalOcean
sets up from the account's SSH keys. Everything else is done by the recipes,
where it is checked and repeatable.
"""

from __future__ import annotations

import json


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "\n".join(pad + line for line in text.strip().splitlines())


def user_data(host_private: str, host_public: str) -> str:
    # JSON strings are valid YAML scalars: no quoting surprises in the public key line.
    return (
        "#cloud-config\n"
        "# written by rocket-wizard: the host key is pinned on the operator's machine\n"
        "ssh_deletekeys: true\n"
        "ssh_genkeytypes: [ed25519]\n"
        "disable_root: false\n"
        "ssh_keys:\n"
        "  ed25519_private: |\n"
        f"{_block(host_private, 4)}\n"
        f"  ed25519_public: {json.dumps(host_public)}\n"
    )
