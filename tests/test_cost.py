"""The cost model: the runbook's own example, break-even, backups, licence, currency."""

from __future__ import annotations

import pytest

from wizard import catalog, cost
from wizard.cost import CostInput, DropletLine, SaasOffer
from wizard.plan import Plan


def _runbook_input(price: float) -> CostInput:
    # "USD 80/month in the configuration I described": four boxes, no backups counted.
    drops = [DropletLine(host=h, role=r, size="2016", price_monthly=20.0)
             for h, r in [("mongo1", "mongo"), ("mongo2", "mongo"), ("mongo3", "mongo"), ("web1", "web")]]
    return CostInput(users=150, offers=[SaasOffer(key="slack", name="Slack", per_user_month=price,
                                                  checked="2016")],
                     droplets=drops, prices_source="manual", backups="none",
                     needs_licence=False, upkeep_hours_month=0)


@pytest.mark.parametrize("price,yearly", [(6.67, 12_006.0), (8.0, 14_400.0)])
def test_runbook_example(price, yearly):
    r = cost.estimate(_runbook_input(price))
    slack = r.saas[0]
    assert slack.yearly == pytest.approx(yearly)
    assert slack.monthly == pytest.approx(yearly / 12)
    assert r.self_hosted.monthly == pytest.approx(80.0)
    assert r.self_hosted.yearly == pytest.approx(960.0)
    # "That's 12 times cheaper."
    assert slack.yearly / r.self_hosted.yearly >= 12.5
    # "If you're a small team (around a dozen people) it's well worth it" to pay Slack:
    # below ceil(80 / price) users Slack is cheaper.
    assert slack.break_even_users == (12 if price == 6.67 else 10)


def test_break_even_is_the_first_cheaper_count():
    inp = _runbook_input(6.67)
    n = cost.break_even(inp, 6.67)
    assert n * 6.67 >= cost.self_hosted_monthly(inp, n)
    assert (n - 1) * 6.67 < cost.self_hosted_monthly(inp, n - 1)


def test_backups_share_of_droplets():
    inp = _runbook_input(8.0)
    assert cost.backups_monthly(inp.model_copy(update={"backups": "weekly"})) == pytest.approx(16.0)
    assert cost.backups_monthly(inp.model_copy(update={"backups": "daily"})) == pytest.approx(24.0)
    assert cost.backups_monthly(inp) == 0


def test_licence_free_tier_then_per_user():
    inp = _runbook_input(8.0).model_copy(update={"needs_licence": True, "licence_per_user_month": 4.0})
    assert cost.licence_monthly(inp, 50) == 0
    assert cost.licence_monthly(inp, 51) == pytest.approx(204.0)
    # 80 fixed: 10 users at 8 pay it, inside the free tier.
    assert cost.break_even(inp, 8.0) == 10
    # A 1 USD offer needs 80 users; above 50 each user costs 4 more to self-host: never cheaper.
    assert cost.break_even(inp, 1.0) is None
    # 5 USD offer: 16 <= 50 users... fixed 80 / 5 = 16 inside the tier.
    assert cost.break_even(inp, 5.0) == 16
    # Bigger fixed cost pushes it above the tier: (p - l) * n >= F.
    big = inp.model_copy(update={"upkeep_hours_month": 10, "hourly_rate": 50})   # F = 580
    assert cost.break_even(big, 6.0) == 290                                          # 580 / (6 - 4)
    n = cost.break_even(big, 6.0)
    assert n * 6.0 >= cost.self_hosted_monthly(big, n)
    assert (n - 1) * 6.0 < cost.self_hosted_monthly(big, n - 1)


def test_upkeep_and_exchange_rate():
    inp = _runbook_input(8.0).model_copy(update={"upkeep_hours_month": 3, "hourly_rate": 40,
                                                 "exchange_rate": 5.0, "currency": "BRL"})
    r = cost.estimate(inp)
    assert r.self_hosted.monthly == pytest.approx(200.0)
    assert r.local(r.self_hosted.monthly) == pytest.approx(1000.0)
    assert r.currency == "BRL"
    labels = [b.label for b in r.breakdown]
    assert any("upkeep 3 h" in x for x in labels)


def test_input_from_plan_catalog_and_live(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("x")
    key.with_name("id_ed25519.pub").write_text("ssh-ed25519 AAAA test")
    plan = Plan(name="acme", domain="chat.example.com", admin_email="ops@example.com", ssh_key=key)
    inp = cost.input_from_plan(plan, users=150)
    mongo = catalog.SIZES[plan.sizes.mongo].price_monthly
    web = catalog.SIZES[plan.sizes.web].price_monthly
    assert cost.droplets_monthly(inp) == pytest.approx(3 * mongo + web)
    assert inp.prices_source == "catalog" and inp.prices_checked == catalog.PRICES_CHECKED
    assert inp.needs_licence is plan.needs_scalability_licence is True
    live = cost.input_from_plan(plan, live_prices={plan.sizes.mongo: 10.0, plan.sizes.web: 20.0})
    assert cost.droplets_monthly(live) == pytest.approx(50.0)
    assert live.prices_source == "live"
    r = cost.estimate(inp)
    # weekly backups by default: +20%; Pro licence for 150 users > 50 free.
    expected = (3 * mongo + web) * 1.2 + 150 * cost.RC_PRO_PER_USER_MONTH
    assert r.self_hosted.monthly == pytest.approx(expected)
    assert r.self_hosted.unverified   # the Pro price is a default nobody could check


def test_default_offers_carry_dates():
    offers = {o.key: o for o in cost.default_offers()}
    assert offers["slack_pro"].per_user_month == 7.25
    assert offers["slack_business"].per_user_month == 12.50
    assert offers["mattermost_pro"].per_user_month == 10.0
    assert all(o.checked and o.unverified for o in offers.values())


def test_money():
    assert cost.money(12006) == "12,006 USD"
    assert cost.money(6.5, "EUR") == "6.50 EUR"
