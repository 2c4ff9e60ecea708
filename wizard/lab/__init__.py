"""systemd-nspawn lab: Debian 12 hosts in network namespaces (see docs/lab.md)."""

from .errors import LabError

__all__ = ["LabError"]
