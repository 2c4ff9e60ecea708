"""The operator's SSH key pair for a test: id_ed25519 (0600) and id_ed25519.pub in a folder."""

from __future__ import annotations

from pathlib import Path

import asyncssh


def operator_key(folder: Path, comment: str = "operator@test") -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    path = folder / "id_ed25519"
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    path.with_name("id_ed25519.pub").write_bytes(key.export_public_key("openssh"))
    return path
