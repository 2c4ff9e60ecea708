"""Pick the provider a plan names. Imported lazily: `plan` needs neither."""

from __future__ import annotations

from typing import Callable

from ..plan import Plan
from .base import Provider, ProviderError


def make_provider(plan: Plan, token: Callable[[], str] | None = None) -> Provider:
    if plan.provider == "lab":
        import os

        from .lab import LabProvider
        # The lab to use: the product's default, or another one (tests, parallel rehearsals).
        return LabProvider(plan.name, prefix=os.environ.get("RW_LAB_PREFIX"),
                           subnet=os.environ.get("RW_LAB_SUBNET"), ssh_public_key=plan.public_key())
    from .digitalocean import DigitalOceanProvider
    return DigitalOceanProvider.for_plan(plan, token=token)


__all__ = ["make_provider", "Provider", "ProviderError"]
