"""Cost estimate: N users on Slack or Mattermost against the self-hosted plan.

Left, what the operator can change (users, per-user prices with the date each
was checked, the licence price, hours of upkeep and their rate, an exchange
rate); right, the table, the bar chart and the break-even user counts, all
recomputed on every keystroke by the pure model in ``wizard.cost``. Droplet
prices are live when a token is set (fetched in a thread worker), else the
dated built-in table.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static

from wizard import cost
from wizard.cost import CostInput, CostResult, SaasOffer

from . import backend
from .messages import PricesLoaded
from .widgets.bar_chart import BarChart

SHORT = {"slack_pro": "Slack Pro", "slack_business": "Slack Biz+", "mattermost_pro": "Mattermost",
         "self_hosted": "Self-hosted"}


def _num(text: str) -> float | None:
    try:
        v = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return v if v >= 0 else None


class CostScreen(Screen):
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: plan"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "reset_prices", "Default prices"),
    ]
    DEFAULT_CSS = """
    CostScreen #inputs { width: 36; padding: 0 1; }
    CostScreen #inputs .row > .label { width: 20; }
    CostScreen #results { width: 1fr; padding: 0 1; }
    CostScreen #table { height: auto; }
    CostScreen #chart { margin-top: 1; }
    CostScreen #breakdown { margin-top: 1; height: auto; color: $text-muted; }
    CostScreen #verdict { margin-top: 1; height: auto; }
    CostScreen #cost-error { height: auto; color: $error; }
    """

    def compose(self) -> ComposeResult:
        s = self.app.cost_settings
        yield Header()
        with Horizontal():
            with VerticalScroll(id="inputs"):
                yield Static("What it would cost", classes="title")
                yield self._row("Users", "users", str(s["users"]))
                for o in s["offers"]:
                    yield self._row(f"{SHORT.get(o.key, o.name)} {o.checked}{'*' if o.unverified else ''}",
                                    f"price-{o.key}", f"{o.per_user_month:g}")
                yield self._row("RC Pro/user*", "licence", f"{s.get('licence', cost.RC_PRO_PER_USER_MONTH):g}")
                yield self._row("Upkeep h/month", "upkeep_hours_month", f"{s['upkeep_hours_month']:g}")
                yield self._row("Rate USD/hour", "hourly_rate", f"{s['hourly_rate']:g}")
                yield self._row("1 USD =", "exchange_rate", f"{s['exchange_rate']:g}")
                yield self._row("Currency", "currency", s["currency"])
                with Horizontal(classes="row"):
                    yield Label("Backups", classes="label")
                    yield Select([("none", "none"), ("weekly +20%", "weekly"), ("daily +30%", "daily")],
                                 value=s.get("backups", self.app.draft_plan().backups), allow_blank=False,
                                 compact=True, id="backups")
                yield Static("USD/user/month billed yearly\n(Slack Pro monthly: 8.75)\n"
                             "* unverified snapshot or\n  default: edit it",
                             classes="hint", id="price-note")
                yield Static("", id="cost-error")
            with VerticalScroll(id="results"):
                yield Static(id="table")
                yield BarChart(id="chart", label_width=15)
                yield Static(id="breakdown")
                yield Static(id="verdict")
        yield Footer()

    @staticmethod
    def _row(label: str, key: str, value: str) -> Horizontal:
        return Horizontal(Label(label, classes="label"), Input(value, id=key, compact=True), classes="row")

    def on_mount(self) -> None:
        self.recompute()
        self.fetch_prices()
        self.query_one("#users", Input).focus()

    def on_screen_resume(self) -> None:
        self.recompute()

    # ---- live prices -------------------------------------------------------
    @work(thread=True, exclusive=True, group="prices", exit_on_error=False)
    def fetch_prices(self) -> None:
        if self.app.live_prices is not None:
            return
        prices, note = backend.live_prices(self.app.draft_plan())
        self.post_message(PricesLoaded(prices, note))

    def on_prices_loaded(self, msg: PricesLoaded) -> None:
        self.app.live_prices = msg.prices
        self.app.prices_note = msg.note
        self.recompute()

    # ---- the model ---------------------------------------------------------
    def current_input(self) -> tuple[CostInput | None, str]:
        s = self.app.cost_settings
        vals: dict[str, float] = {}
        for key in ("users", "licence", "upkeep_hours_month", "hourly_rate", "exchange_rate"):
            v = _num(self.query_one(f"#{key}", Input).value)
            if v is None:
                return None, f"{key.replace('_', ' ')}: a number >= 0, please"
            vals[key] = v
        if vals["users"] < 1 or vals["users"] != int(vals["users"]):
            return None, "users: a whole number of at least 1"
        if vals["exchange_rate"] <= 0:
            return None, "exchange rate: more than 0"
        offers = []
        for o in s["offers"]:
            v = _num(self.query_one(f"#price-{o.key}", Input).value)
            if v is None:
                return None, f"{o.name}: a price >= 0, please"
            offers.append(o if v == o.per_user_month else o.model_copy(update={"per_user_month": v}))
        currency = self.query_one("#currency", Input).value.strip().upper()[:6] or "USD"
        backups = self.query_one("#backups", Select).value
        plan = self.app.draft_plan().model_copy()
        try:
            inp = cost.input_from_plan(plan, live_prices=self.app.live_prices, users=int(vals["users"]),
                                       offers=offers, licence_per_user_month=vals["licence"],
                                       upkeep_hours_month=vals["upkeep_hours_month"],
                                       hourly_rate=vals["hourly_rate"], exchange_rate=vals["exchange_rate"],
                                       currency=currency, backups=backups)
        except ValueError as e:
            return None, str(e).splitlines()[0]
        s.update(users=inp.users, offers=offers, licence=inp.licence_per_user_month,
                 upkeep_hours_month=inp.upkeep_hours_month, hourly_rate=inp.hourly_rate,
                 exchange_rate=inp.exchange_rate, currency=currency, backups=backups)
        return inp, ""

    @on(Input.Changed)
    @on(Select.Changed)
    def recompute(self, _event=None) -> None:
        inp, err = self.current_input()
        self.query_one("#cost-error", Static).update(err)
        if inp is None:
            return
        r = cost.estimate(inp)
        self.result = r
        self.query_one("#table", Static).update(self.render_table(r))
        self.query_one("#chart", BarChart).set_rows(self.chart_rows(r))
        self.query_one("#breakdown", Static).update(self.render_breakdown(inp, r))
        self.query_one("#verdict", Static).update(self.render_verdict(r))

    def _cur(self, r: CostResult) -> str:
        return r.currency if r.exchange_rate != 1 or r.currency != "USD" else "USD"

    def render_table(self, r: CostResult) -> Table:
        t = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold", expand=False,
                  title=f"{r.users} users, {self._cur(r)}", title_justify="left", title_style="bold")
        t.add_column("option", width=12, no_wrap=True)
        t.add_column("per month", justify="right", width=9, no_wrap=True)
        t.add_column("per year", justify="right", width=10, no_wrap=True)
        t.add_column("b/e", justify="right", width=6, no_wrap=True)
        for o in r.options:
            style = "bold green" if o.key == "self_hosted" else ""
            be = "" if o.break_even_users is None and o.key == "self_hosted" else (
                str(o.break_even_users) if o.break_even_users is not None else "never")
            t.add_row(Text(SHORT.get(o.key, o.name), style=style), f"{r.local(o.monthly):,.0f}",
                      f"{r.local(o.yearly):,.0f}", be)
        return t

    def chart_rows(self, r: CostResult) -> list[tuple[str, float, str, str]]:
        return [(SHORT.get(o.key, o.name), o.yearly, f"{r.local(o.yearly):,.0f}/yr",
                 "green" if o.key == "self_hosted" else "magenta") for o in r.options]

    def render_breakdown(self, inp: CostInput, r: CostResult) -> str:
        lines = [f"Self-hosted per month ({self._cur(r)}):"]
        for b in r.breakdown:
            lines.append(f" {b.label[:31]:<31}{r.local(b.monthly):>9,.2f}")
        src = self.app.prices_note or f"built-in prices checked {inp.prices_checked}"
        lines.append(f" ({src})")
        return "\n".join(lines)

    def render_verdict(self, r: CostResult) -> Text:
        cheapest = min(r.saas, key=lambda o: o.yearly) if r.saas else None
        if cheapest is None:
            return Text("")
        diff = r.local(cheapest.yearly - r.self_hosted.yearly)
        cur = self._cur(r)
        be = cheapest.break_even_users
        be_txt = f"self-hosting pays from {be} users" if be else "never cheaper than it"
        if diff > 0:
            return Text(f"Saves {diff:,.0f} {cur}/yr against {SHORT[cheapest.key]}; {be_txt}.",
                        style="bold green")
        return Text(f"Costs {-diff:,.0f} {cur}/yr more than {SHORT[cheapest.key]}; {be_txt}.",
                    style="bold yellow")

    # ---- actions -----------------------------------------------------------
    def action_next(self) -> None:
        self.app.start_new()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reset_prices(self) -> None:
        for o in cost.default_offers():
            self.query_one(f"#price-{o.key}", Input).value = f"{o.per_user_month:g}"
        self.query_one("#licence", Input).value = f"{cost.RC_PRO_PER_USER_MONTH:g}"
