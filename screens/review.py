"""Review: the engine's plan (every droplet, its size and price, what goes where, the total).

Terraform's plan step: nothing is created until the operator confirms here.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from wizard.plan import Plan


class ReviewScreen(Screen):
    BINDINGS = [
        Binding("y", "create", "Create it"),
        Binding("escape", "back", "Back to the plan"),
        Binding("c", "cost", "Cost"),
    ]
    DEFAULT_CSS = """
    ReviewScreen #review { padding: 0 1; height: 1fr; }
    ReviewScreen #hosts { height: auto; }
    ReviewScreen #installs { height: auto; margin-top: 1; }
    ReviewScreen #total { height: auto; margin-top: 1; }
    ReviewScreen #notes { height: auto; margin-top: 1; color: $warning; }
    ReviewScreen #confirm { height: 1; background: $panel; padding: 0 1; }
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.deployment = None
        self.review = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="review"):
            yield Static(id="title", classes="title")
            yield Static(id="hosts")
            yield Static(id="installs")
            yield Static(id="total")
            yield Static(id="notes")
        yield Static(Text.from_markup("Nothing is created yet: [b]y[/] creates and configures these "
                                      "hosts, [b]esc[/] goes back."), id="confirm")
        yield Footer()

    def on_mount(self) -> None:
        self.deployment = self.app.deployment_for(self.plan)
        self.review = r = self.deployment.review(self.app.live_prices)
        p = self.plan
        self.query_one("#title", Static).update(
            f"Review: {p.name} on {p.provider} ({p.region}, {p.image})")
        t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
        t.add_column("host", no_wrap=True)
        t.add_column("role", no_wrap=True)
        t.add_column("size", no_wrap=True)
        t.add_column("USD/month", justify="right", no_wrap=True)
        for h in r.hosts:
            t.add_row(h.name, h.role, h.size, f"{h.price_monthly:.2f}")
        self.query_one("#hosts", Static).update(t)
        # what is installed where: once per role, the hosts named (saves rows at 80x24)
        lines = Text()
        by_role: dict[str, list] = {}
        for h in r.hosts:
            by_role.setdefault(h.role, []).append(h)
        for role, hosts in by_role.items():
            names = ", ".join(h.name for h in hosts)
            lines.append(f"{names}:\n", style="bold")
            for item in hosts[0].installs:
                lines.append(f"  • {item}\n")
        self.query_one("#installs", Static).update(lines)
        src = "live prices" if r.priced_live else f"built-in prices checked {r.prices_checked}"
        total = Text()
        total.append(f"droplets {r.droplets_monthly:.2f} + backups ({p.backups}) {r.backups_monthly:.2f} = ")
        total.append(f"{r.total_monthly:.2f} USD/month", style="bold green")
        total.append(f", {r.total_monthly * 12:,.2f} USD/year ({src})")
        self.query_one("#total", Static).update(total)
        self.query_one("#notes", Static).update("\n".join(f"! {n}" for n in r.notes))

    def action_create(self) -> None:
        from .run import RunScreen
        self.app.push_screen(RunScreen(self.deployment, resume=True))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cost(self) -> None:
        self.app.show_cost()
