"""Pilot-driven behaviour of each screen: navigation, validation, cost figures,
the run (failure, retry, skip, Ctrl-C) and the resume offer on the next start."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text
from textual.widgets import Input, Select, Static

from screens.cost import CostScreen
from screens.demo import DemoDeployment, demo_plan, make_interrupted
from screens.dialogs import ResumeDialog
from screens.done import DoneScreen
from screens.plan_form import PlanScreen, wid
from screens.review import ReviewScreen
from screens.run import RunScreen
from screens.status import StatusScreen
from screens.welcome import WelcomeScreen
from screens.widgets.log_pane import LogPane
from wizard.state import StateStore

SIZE = (80, 24)


async def wait_run(pilot, limit: float = 10.0) -> RunScreen:
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    for _ in range(int(limit / 0.02)):
        if not screen.running:
            break
        await pilot.pause(0.02)
    await pilot.pause()
    assert not screen.running
    return screen


def text_of(screen, selector: str) -> str:
    """The plain text a Static shows (str, Text or a Rich table), at a wide width."""
    content = screen.query_one(selector, Static).content
    if isinstance(content, str):
        return Text.from_markup(content).plain
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


async def set_value(pilot, screen, selector: str, value) -> None:
    screen.query_one(selector).value = value
    await pilot.pause()


# ---------------------------------------------------------------- cost


async def test_cost_runbook_example(app_factory):
    """150 users on Slack at 6.67 (yearly) and 8 (monthly) against USD 80 of droplets."""
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CostScreen)
        await set_value(pilot, screen, "#users", "150")
        await set_value(pilot, screen, "#price-slack_pro", "6.67")
        await set_value(pilot, screen, "#price-slack_business", "8")
        r = screen.result
        assert r.saas[0].yearly == pytest.approx(12_006)
        assert r.saas[1].yearly == pytest.approx(14_400)
        assert "12,006" in text_of(screen, "#table").replace("\u00a0", " ")
        # the runbook's droplets: 80 a month; the break-even comes out at a dozen users
        from wizard import cost
        inp = cost.CostInput(users=150, droplets=[cost.DropletLine(host="x", role="web", size="x", price_monthly=80)],
                             backups="none", upkeep_hours_month=0)
        assert cost.break_even(inp, 6.67) == 12


async def test_cost_edits_recompute_and_reject_bad_numbers(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        screen = app.screen
        before = screen.result.self_hosted.monthly
        await set_value(pilot, screen, "#upkeep_hours_month", "10")
        await set_value(pilot, screen, "#hourly_rate", "50")
        assert screen.result.self_hosted.monthly == pytest.approx(before + 500)
        screen.query_one("#backups", Select).value = "daily"
        await pilot.pause()
        assert any("daily (+30%)" in b.label for b in screen.result.breakdown)
        await set_value(pilot, screen, "#exchange_rate", "5")
        await set_value(pilot, screen, "#currency", "brl")
        assert screen.result.currency == "BRL"
        assert "BRL" in text_of(screen, "#breakdown")
        good = screen.result
        await set_value(pilot, screen, "#users", "many")
        assert "users" in text_of(screen, "#cost-error")
        assert screen.result is good            # the last good figures stay
        # the settings survive leaving and coming back
        await pilot.press("escape")
        await pilot.press("c")
        assert app.screen.query_one("#hourly_rate", Input).value == "50"


# ---------------------------------------------------------------- plan form


async def test_plan_inline_validation_and_navigation(app_factory, ssh_key):
    app = app_factory(check_files=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")          # Welcome -> Cost
        await pilot.press("ctrl+n")     # Cost -> Plan
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        await pilot.press("ctrl+n")     # invalid: stays, focus jumps to the first error
        assert isinstance(app.screen, PlanScreen)
        await set_value(pilot, screen, f"#{wid('name')}", "Acme Chat")
        assert "lowercase" in text_of(screen, f"#err-{wid('name')}")
        assert screen.query_one(f"#row-{wid('name')}").has_class("invalid")
        await set_value(pilot, screen, f"#{wid('name')}", "acme-chat")
        assert text_of(screen, f"#err-{wid('name')}") == ""
        await set_value(pilot, screen, f"#{wid('domain')}", "10.0.0.5")
        assert "address" in text_of(screen, f"#err-{wid('domain')}")
        await set_value(pilot, screen, f"#{wid('domain')}", "chat.example.com")
        await set_value(pilot, screen, f"#{wid('admin_email')}", "ops@example")
        assert "email" in text_of(screen, f"#err-{wid('admin_email')}")
        await set_value(pilot, screen, f"#{wid('admin_email')}", "ops@example.com")
        assert "does not exist" in text_of(screen, f"#err-{wid('ssh_key')}")
        await set_value(pilot, screen, f"#{wid('ssh_key')}", str(ssh_key))
        await set_value(pilot, screen, f"#{wid('app_hosts')}", "two")
        assert "whole number" in text_of(screen, f"#err-{wid('app_hosts')}")
        await set_value(pilot, screen, f"#{wid('app_hosts')}", "1")
        # a cross-field rule lands on the field it names
        screen.query_one(f"#{wid('mongodb_version')}", Select).value = "7.0"
        await pilot.pause()
        assert "8.0" in text_of(screen, f"#err-{wid('mongodb_version')}")
        screen.query_one(f"#{wid('mongodb_version')}", Select).value = "8.0"
        await pilot.pause()
        assert screen.plan is not None and screen.errors == {}
        assert "valid" in text_of(screen, "#summary")
        await pilot.press("ctrl+n")
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("escape")     # back keeps what was typed
        assert app.screen.query_one(f"#{wid('domain')}", Input).value == "chat.example.com"


async def test_answers_file_prefills_the_form(app_factory, ssh_key, tmp_path):
    answers = tmp_path / "acme.toml"
    answers.write_text(f'name = "acme"\ndomain = "chat.acme.org"\nadmin_email = "it@acme.org"\n'
                       f'ssh_key = "{ssh_key}"\nmongo_members = 1\nbackups = "daily"\n'
                       '[sizes]\nweb = "s-4vcpu-8gb"\n')
    app = app_factory(answers=answers, check_files=True)
    async with app.run_test(size=SIZE) as pilot:
        app.start_new()
        await pilot.pause()
        screen = app.screen
        assert screen.query_one(f"#{wid('domain')}", Input).value == "chat.acme.org"
        assert screen.query_one(f"#{wid('mongo_members')}", Select).value == "1"
        assert screen.query_one(f"#{wid('sizes.web')}", Select).value == "s-4vcpu-8gb"
        assert screen.query_one(f"#{wid('backups')}", Select).value == "daily"
        assert screen.plan is not None and screen.plan.trial


# ---------------------------------------------------------------- review


async def test_review_lists_every_droplet_and_creates_nothing_until_y(app_factory, made):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(ReviewScreen(demo_plan("acme")))
        await pilot.pause()
        screen = app.screen
        hosts = text_of(screen, "#hosts")
        for h in ("mongo1", "mongo2", "mongo3", "web1"):
            assert h in hosts
        assert "s-1vcpu-2gb" in hosts and "24.00" in hosts
        assert "72.00 USD/month" in text_of(screen, "#total")
        assert "scalability" in text_of(screen, "#notes")
        assert "Rocket.Chat 8.2.0 x2" in text_of(screen, "#installs")
        assert all(d.apply_calls == 0 for d in made)
        await pilot.press("y")
        run = await wait_run(pilot)
        assert run.ok or run.failed
        assert sum(d.apply_calls for d in made) == 1


# ---------------------------------------------------------------- run


async def test_run_failure_shows_command_then_retry_finishes(app_factory, made, state_dir):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        plan = demo_plan("acme")
        await app.push_screen(RunScreen(app.deployment_for(plan)))
        screen = await wait_run(pilot)
        assert screen.failed and not screen.ok
        fail = text_of(screen, "#failure-text")
        assert "rocketchat.bundle" in fail and "$ curl" in fail and "timed out" in fail
        assert screen.query_one("#failure").has_class("shown")
        cell = screen.model.cells[("web1", "rocketchat")]
        assert cell.state == "failed"
        assert screen.model.cells[("mongo1", "mongodb")].state == "changed"
        assert (screen.model.done, screen.model.total_steps) == (45, 50)
        assert screen.check_action("retry", ()) and not screen.check_action("finish", ())
        await pilot.press("r")
        screen = await wait_run(pilot)
        assert screen.ok and not screen.query_one("#failure").has_class("shown")
        assert screen.model.done == screen.model.total_steps == 50
        run = StateStore("acme").state.last_run
        assert run.status == "done" and run.resumed == 1
        assert "100%" in text_of(screen, "#progress")
        await pilot.press("enter")
        assert isinstance(app.screen, DoneScreen)
        assert "https://chat.example.com" in text_of(app.screen, "#next-steps")
        assert str(StateStore("acme").secrets.path) in text_of(app.screen, "#next-steps")


async def test_skip_reruns_without_the_failed_step(app_factory, state_dir):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(RunScreen(app.deployment_for(demo_plan("acme"))))
        screen = await wait_run(pilot)
        assert screen.failed and screen.check_action("skip", ())
        await pilot.press("k")
        screen = await wait_run(pilot)
        assert screen.ok
        run = StateStore("acme").state.last_run
        assert run.steps["rocketchat.bundle@web1"].status == "failed"   # skipped this time, not done
        assert run.done("rocketchat.units@web1")


async def test_ctrl_c_stops_and_next_start_offers_resume(app_factory, made, state_dir):
    app = app_factory(demo={"delay": 0.05, "fail_once": ()})
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(RunScreen(app.deployment_for(demo_plan("acme"))))
        screen = app.screen
        for _ in range(200):
            if screen.model.done >= 12:
                break
            await pilot.pause(0.02)
        assert screen.running
        await pilot.press("ctrl+c")
        await pilot.pause(0.1)
        assert not screen.running and screen.interrupted
        assert screen.check_action("retry", ())
        done_then = screen.model.done
    run = StateStore("acme").state.last_run
    assert run.status == "interrupted"
    assert 12 <= sum(run.done(k) for k in run.steps) < 50

    # a new start of the wizard offers to continue, showing what is done
    app2 = app_factory(offer_resume=True, demo={"fail_once": ()})
    async with app2.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.pause()
        dialog = app2.screen
        assert isinstance(dialog, ResumeDialog)
        summary = text_of(dialog, "#resume-summary")
        assert "acme" in summary and "provision" in summary and "8/8" in summary
        await pilot.press("r")
        screen = await wait_run(pilot)
        assert screen.ok
        assert screen.model.done == 50
        assert screen.model.done_now == 50 - sum(1 for k in run.steps if run.done(k))
        assert done_then <= 50
    run = StateStore("acme").state.last_run
    assert run.status == "done" and run.resumed == 1


async def test_quit_during_a_run_leaves_state_interrupted(app_factory, state_dir):
    app = app_factory(demo={"delay": 0.05, "fail_once": ()})
    async with app.run_test(size=SIZE) as pilot:
        await app.push_screen(RunScreen(app.deployment_for(demo_plan("acme"))))
        for _ in range(100):
            if app.screen.model.done >= 4:
                break
            await pilot.pause(0.02)
        await pilot.press("ctrl+q")
        await pilot.pause(0.1)
    assert StateStore("acme").state.last_run.status == "interrupted"


async def test_second_app_cannot_run_a_locked_deployment(app_factory, state_dir):
    store = StateStore("acme")
    store.lock()
    try:
        app = app_factory()
        async with app.run_test(size=SIZE) as pilot:
            await app.push_screen(RunScreen(app.deployment_for(demo_plan("acme"))))
            screen = await wait_run(pilot)
            assert screen.failed
            assert "in use by" in text_of(screen, "#failure-text")
    finally:
        store.unlock()


# ---------------------------------------------------------------- welcome, status


async def test_welcome_lists_deployments_and_opens_status(app_factory, state_dir):
    make_interrupted(demo_plan("acme"))
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, WelcomeScreen)
        ids = [screen.query_one("#choices").get_option_at_index(i).id
               for i in range(screen.query_one("#choices").option_count)]
        assert ids == ["new", "cost", "resume:acme", "status:acme"]
        await pilot.press("down", "down", "down", "enter")
        assert isinstance(app.screen, StatusScreen)


async def test_status_refreshes_in_the_background(app_factory, state_dir):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        d = DemoDeployment(demo_plan("acme"), status_delay=1.0)
        await app.push_screen(StatusScreen(d, refresh_seconds=0.5))
        await pilot.pause()
        assert "asking the hosts" in text_of(app.screen, "#st-state")   # the UI is up while hosts answer
        for _ in range(600):
            if app.screen.refreshes >= 2:
                break
            await pilot.pause(0.05)
        assert app.screen.refreshes >= 2
        assert "3/4 hosts answer" in text_of(app.screen, "#st-state")
        hosts = text_of(app.screen, "#st-hosts")
        assert "connection timed out" in hosts and "42%" in hosts
        assert "PRIMARY" in text_of(app.screen, "#st-mongo")
        more = text_of(app.screen, "#st-more")
        assert "2/2 healthy" in more and "83 days" in more and "72.00 USD/month" in more


async def test_deployment_argument_opens_the_resume_offer(app_factory, state_dir):
    make_interrupted(demo_plan("acme"))
    app = app_factory(deployment="acme")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, ResumeDialog)
        await pilot.press("escape")
        assert isinstance(app.screen, WelcomeScreen)


async def test_log_pane_batches_and_caps(app_factory):
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        pane = LogPane(max_lines=1000, flush_interval=10)
        await app.screen.mount(pane)
        for i in range(10_000):
            pane.add("web1", f"line {i}")
        assert pane.line_count == 0 and pane.pending == 10_000     # nothing drawn per line
        pane.flush()
        await pilot.pause()
        assert pane.line_count == 1000 and pane.pending == 0
        assert pane.lines[-1].endswith("line 9999")


async def test_cost_and_review_use_live_prices_when_a_token_is_set(app_factory, monkeypatch):
    """Live price_monthly from the API (the DigitalOcean double on 127.0.0.1) replaces the table."""
    from tests.doubles import digitalocean as double_mod
    sizes = [(s, m, c, d, t, {"s-1vcpu-2gb": 15.0, "s-2vcpu-4gb": 30.0}.get(s, p))
             for s, m, c, d, t, p in double_mod.SIZES]
    monkeypatch.setattr(double_mod, "SIZES", sizes)
    with double_mod.DigitalOceanDouble(token="tui-token") as api:
        monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", "tui-token")
        monkeypatch.setenv("DIGITALOCEAN_END_POINT", api.end_point)
        app = app_factory()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("c")
            screen = app.screen
            for _ in range(100):
                if app.live_prices is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause()
            assert app.live_prices and app.live_prices["s-1vcpu-2gb"] == 15.0
            drops = screen.result.breakdown[0]
            assert "live" in drops.label and drops.monthly == pytest.approx(3 * 15 + 30)
            assert "live prices" in text_of(screen, "#breakdown")
            await app.push_screen(ReviewScreen(demo_plan("acme")))
            await pilot.pause()
            assert "75.00 +" in text_of(app.screen, "#total") and "live prices" in text_of(app.screen, "#total")


async def test_live_price_failure_falls_back_to_the_table(app_factory, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", "bad-token-do-not-print")
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", "http://127.0.0.1:9/v2/")   # nothing listens
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        for _ in range(600):
            if app.prices_note:
                break
            await pilot.pause(0.05)
        assert app.live_prices is None and "unavailable" in app.prices_note
        assert "bad-token-do-not-print" not in app.prices_note
        assert app.screen.result.breakdown[0].label.endswith("(catalog prices)")


async def test_command_palette_offers_the_journey(app_factory, state_dir):
    make_interrupted(demo_plan("acme"))
    app = app_factory()
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"New deployment", "Cost estimate", "Status of acme", "Resume acme"} <= set(titles)
        await pilot.press("ctrl+p")
        await pilot.pause()
        for ch in "cost est":
            await pilot.press(ch if ch != " " else "space")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert isinstance(app.screen, CostScreen)


async def test_invalid_answers_file_still_prefills_and_says_why(app_factory, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    answers = tmp_path / "acme.toml"
    answers.write_text('name = "acme"\ndomain = "chat.acme.org"\nadmin_email = "it@acme.org"\n'
                       'ssh_key = "keys/missing"\n')
    app = app_factory(answers=answers, check_files=True)
    assert "ssh_key" in app.answers_error
    async with app.run_test(size=SIZE) as pilot:
        app.start_new()
        await pilot.pause()
        screen = app.screen
        assert screen.query_one(f"#{wid('ssh_key')}", Input).value == str(keys / "missing")
        assert "does not exist" in text_of(screen, f"#err-{wid('ssh_key')}")
        assert screen.query_one(f"#{wid('domain')}", Input).value == "chat.acme.org"


def test_main_is_the_cli_entry():
    import inspect

    from screens.app import main
    assert list(inspect.signature(main).parameters) == ["answers", "deployment"]
