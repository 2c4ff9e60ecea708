"""Pick the provider a plan names. Imported lazily: `plan` needs neither."""

from __future__ import annotations

from typing import Callable

from ..plan import Plan
from .base import Provider, ProviderError


def make_provider(plan: Plan, token: Callable[[], str] | None = None) -> Provider:
    if plan.provider == "lab":
        from .lab import LabProvider
        return LabProvider.for_plan(plan)
    from .digitalocean import DigitalOceanProvider
    return DigitalOceanProvider.for_plan(plan, token=token)


__all__ = ["make_provider", "Provider", "ProviderError"]
