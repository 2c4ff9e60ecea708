"""What self-hosting costs against the SaaS chat offers: pure functions, no I/O.

The runbook's argument, made checkable: N users on Slack at a per-user price
against a few droplets, their backups, the Rocket.Chat licence when the plan
needs one, and the operator's hours of upkeep. Every SaaS price carries the date
it was checked and whether it is a third-party snapshot (*unverified*): the
operator edits them, the screen shows the date. Amounts are USD; an exchange
rate turns them into a local currency (the runbook's point about devalued
currencies: the same dollars weigh three times as much there).

``estimate(CostInput) -> CostResult`` is all the Cost screen calls.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from . import catalog
from .plan import Plan

SAAS_CHECKED = "2026-12"

# Rocket.Chat: Starter is free up to this many users; above it a paid plan.
RC_STARTER_FREE_USERS = 50
# Pro price per user and month: *unverified* (no public source we could check);
# an editable default, shown as such.
RC_PRO_PER_USER_MONTH = 4.60

# The break-even search never looks beyond this many users.
MAX_USERS = 1_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SaasOffer(_Model):
    key: str
    name: str
    per_user_month: float = Field(ge=0)     # USD per user per month
    billing: Literal["monthly", "yearly"] = "yearly"
    checked: str = SAAS_CHECKED              # when the price was last checked
    unverified: bool = True                  # a third-party snapshot, not the vendor's word
    note: str = ""


def default_offers() -> list[SaasOffer]:
    """Per-user prices from /work/shared/notes/facts.md (checked 2026-12).

    Slack Pro is 8.75 billed monthly and 7.25 billed yearly; we compare at the
    yearly price like the other two, which are billed yearly only.
    """
    return [
        SaasOffer(key="slack_pro", name="Slack Pro", per_user_month=7.25,
                  note="8.75 billed monthly"),
        SaasOffer(key="slack_business", name="Slack Business+", per_user_month=12.50),
        SaasOffer(key="mattermost_pro", name="Mattermost Professional", per_user_month=10.0),
    ]


class DropletLine(_Model):
    host: str
    role: str
    size: str
    price_monthly: float = Field(ge=0)


class CostInput(_Model):
    users: int = Field(150, ge=1, le=MAX_USERS)
    offers: list[SaasOffer] = Field(default_factory=default_offers)
    droplets: list[DropletLine] = Field(default_factory=list)
    prices_source: Literal["live", "catalog", "manual"] = "catalog"
    prices_checked: str = catalog.PRICES_CHECKED
    backups: Literal["none", "weekly", "daily"] = "weekly"
    needs_licence: bool = False              # several Rocket.Chat instances: scalability module
    licence_per_user_month: float = Field(RC_PRO_PER_USER_MONTH, ge=0)
    licence_unverified: bool = True
    licence_free_users: int = Field(RC_STARTER_FREE_USERS, ge=0)
    upkeep_hours_month: float = Field(4.0, ge=0)
    hourly_rate: float = Field(0.0, ge=0)    # USD per hour of the operator's time
    exchange_rate: float = Field(1.0, gt=0)  # local currency units per USD
    currency: str = "USD"


class Line(_Model):
    label: str
    monthly: float

    @property
    def yearly(self) -> float:
        return self.monthly * 12


class OptionCost(_Model):
    key: str
    name: str
    monthly: float
    yearly: float
    per_user_month: float
    checked: str = ""
    unverified: bool = False
    break_even_users: int | None = None      # SaaS rows: users from which self-hosting is cheaper


class CostResult(_Model):
    users: int
    currency: str
    exchange_rate: float
    saas: list[OptionCost]
    self_hosted: OptionCost
    breakdown: list[Line]                    # the self-hosted monthly figure, line by line
    prices_source: str
    prices_checked: str

    def local(self, usd: float) -> float:
        return usd * self.exchange_rate

    @property
    def options(self) -> list[OptionCost]:
        return [*self.saas, self.self_hosted]


# ---------------------------------------------------------------- inputs


def droplets_for(plan: Plan, prices: dict[str, float] | None = None) -> list[DropletLine]:
    """One line per planned host; ``prices`` (live, slug -> USD/month) wins over the catalogue."""
    out = []
    for host, role in plan.hosts():
        slug = getattr(plan.sizes, role)
        price = (prices or {}).get(slug)
        if price is None:
            price = catalog.SIZES[slug].price_monthly if slug in catalog.SIZES else 0.0
        out.append(DropletLine(host=host, role=role, size=slug, price_monthly=price))
    return out


def input_from_plan(plan: Plan, *, live_prices: dict[str, float] | None = None,
                    **overrides) -> CostInput:
    """The cost input a plan implies: its droplets, backups and licence need."""
    data = dict(
        droplets=droplets_for(plan, live_prices),
        prices_source="live" if live_prices else "catalog",
        backups=plan.backups,
        needs_licence=plan.needs_scalability_licence,
    )
    if live_prices:
        data["prices_checked"] = "live"
    data.update(overrides)
    return CostInput(**data)


# ---------------------------------------------------------------- the model


def droplets_monthly(inp: CostInput) -> float:
    return sum(d.price_monthly for d in inp.droplets)


def backups_monthly(inp: CostInput) -> float:
    return droplets_monthly(inp) * catalog.BACKUP_SHARE[inp.backups]


def licence_monthly(inp: CostInput, users: int) -> float:
    if not inp.needs_licence or users <= inp.licence_free_users:
        return 0.0
    return users * inp.licence_per_user_month


def upkeep_monthly(inp: CostInput) -> float:
    return inp.upkeep_hours_month * inp.hourly_rate


def self_hosted_monthly(inp: CostInput, users: int | None = None) -> float:
    users = inp.users if users is None else users
    return droplets_monthly(inp) + backups_monthly(inp) + licence_monthly(inp, users) + upkeep_monthly(inp)


def break_even(inp: CostInput, per_user_month: float) -> int | None:
    """The smallest user count from which self-hosting costs no more than the offer.

    Self-hosting is a fixed cost F (droplets, backups, upkeep) plus, when the
    plan needs a licence, ``l`` per user above the free tier. The offer costs
    ``p`` per user. Below the free tier: n*p >= F. Above it: n*(p - l) >= F.
    None when the offer stays cheaper for every size (p <= l above the tier).
    """
    fixed = droplets_monthly(inp) + backups_monthly(inp) + upkeep_monthly(inp)
    if fixed <= 0:
        return 1
    if per_user_month <= 0:
        return None
    n = max(1, math.ceil(fixed / per_user_month - 1e-9))
    if not inp.needs_licence or n <= inp.licence_free_users:
        return n
    margin = per_user_month - inp.licence_per_user_month
    if margin <= 0:
        return None
    n = max(inp.licence_free_users + 1, math.ceil(fixed / margin - 1e-9))
    return n if n <= MAX_USERS else None


def estimate(inp: CostInput) -> CostResult:
    saas = [
        OptionCost(
            key=o.key, name=o.name,
            monthly=o.per_user_month * inp.users,
            yearly=o.per_user_month * inp.users * 12,
            per_user_month=o.per_user_month,
            checked=o.checked, unverified=o.unverified,
            break_even_users=break_even(inp, o.per_user_month),
        )
        for o in inp.offers
    ]
    n_drop = len(inp.droplets)
    breakdown = [
        Line(label=f"{n_drop} droplet{'s' if n_drop != 1 else ''} ({inp.prices_source} prices)",
             monthly=droplets_monthly(inp)),
        Line(label=f"backups {inp.backups} (+{catalog.BACKUP_SHARE[inp.backups]:.0%})",
             monthly=backups_monthly(inp)),
    ]
    if inp.needs_licence:
        lic = licence_monthly(inp, inp.users)
        label = ("Rocket.Chat Starter (free <= "
                 f"{inp.licence_free_users} users)") if lic == 0 else "Rocket.Chat Pro licence"
        breakdown.append(Line(label=label, monthly=lic))
    breakdown.append(Line(label=f"upkeep {inp.upkeep_hours_month:g} h x {inp.hourly_rate:g}/h",
                          monthly=upkeep_monthly(inp)))
    total = sum(x.monthly for x in breakdown)
    own = OptionCost(key="self_hosted", name="Self-hosted Rocket.Chat", monthly=total,
                     yearly=total * 12, per_user_month=total / inp.users,
                     checked=inp.prices_checked,
                     unverified=inp.needs_licence and inp.licence_unverified
                     and inp.users > inp.licence_free_users)
    return CostResult(users=inp.users, currency=inp.currency, exchange_rate=inp.exchange_rate,
                      saas=saas, self_hosted=own, breakdown=breakdown,
                      prices_source=inp.prices_source, prices_checked=inp.prices_checked)


def money(amount: float, currency: str = "USD") -> str:
    """12,006 USD; cents only below 100."""
    if abs(amount) < 100:
        return f"{amount:,.2f} {currency}"
    return f"{amount:,.0f} {currency}"
