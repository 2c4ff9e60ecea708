"""Status: every host (answers? load, memory, disk), MongoDB members, app instances,
certificate expiry and the monthly cost. Refreshed in the background by a worker."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from . import backend
from .messages import StatusUpdated

REFRESH_SECONDS = 15.0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def _level(v: float | None, warn: float, bad: float) -> str:
    if v is None:
        return "dim"
    return "red" if v >= bad else ("yellow" if v >= warn else "green")


def render_status(st) -> Table:
    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold", title_justify="left")
    for col, just in [("host", "left"), ("role", "left"), ("answers", "left"), ("load", "right"),
                      ("mem", "right"), ("disk", "right")]:
        t.add_column(col, justify=just, no_wrap=True)
    for h in st.hosts:
        if h.reachable:
            t.add_row(h.name, h.role, Text("yes", style="green"),
                      Text("-" if h.load is None else f"{h.load:.2f}", style=_level(h.load, 1.5, 3)),
                      Text(_pct(h.mem_used_pct), style=_level(h.mem_used_pct, 80, 92)),
                      Text(_pct(h.disk_used_pct), style=_level(h.disk_used_pct, 80, 92)))
        else:
            t.add_row(h.name, h.role, Text("no", style="bold red"), Text(h.error[:34], style="red"), "", "")
    return t


def render_mongo(st) -> Table | Text:
    if not st.mongo:
        return Text("MongoDB members: (no probe yet)", style="dim")
    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), header_style="bold")
    for col in ("member", "state", "health", "lag"):
        t.add_column(col, no_wrap=True)
    for m in st.mongo:
        ok = m.state in ("PRIMARY", "SECONDARY") and m.health == 1
        lag = "-" if m.lag_s is None else f"{m.lag_s:.1f}s"
        t.add_row(m.name.split(".")[0] + (":" + m.name.rsplit(":", 1)[1] if ":" in m.name else ""),
                  Text(m.state, style="green" if ok else "bold red"),
                  Text(str(m.health), style="green" if m.health == 1 else "red"), lag)
    return t


def render_footer(st) -> Text:
    t = Text()
    if st.apps:
        up = sum(a.healthy for a in st.apps)
        t.append("apps: ", style="bold")
        t.append(f"{up}/{len(st.apps)} healthy", style="green" if up == len(st.apps) else "bold red")
        down = [f"{a.host}:{a.port}" for a in st.apps if not a.healthy]
        if down:
            t.append(f" (down: {', '.join(down[:4])})", style="red")
        versions = sorted({a.version for a in st.apps if a.version})
        if versions:
            t.append(f", Rocket.Chat {', '.join(versions)}")
        t.append("\n")
    else:
        t.append("apps: (no probe yet)\n", style="dim")
    if st.cert_days_left is not None:
        style = "green" if st.cert_days_left > 20 else ("yellow" if st.cert_days_left > 7 else "bold red")
        t.append("certificate: ", style="bold")
        t.append(f"{st.cert_days_left} days left\n", style=style)
    t.append("cost: ", style="bold")
    t.append(f"{st.monthly_cost:.2f} USD/month, {st.monthly_cost * 12:,.2f} USD/year\n")
    t.append(f"checked {time.strftime('%H:%M:%S', time.gmtime(st.checked_at))} UTC", style="dim")
    return t


class StatusScreen(Screen):
    BINDINGS = [
        Binding("f5,ctrl+r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    DEFAULT_CSS = """
    StatusScreen #status { padding: 0 1; }
    StatusScreen #st-hosts, StatusScreen #st-mongo, StatusScreen #st-more { height: auto; margin-bottom: 1; }
    StatusScreen #st-state { height: 1; color: $text-muted; }
    """

    def __init__(self, deployment: backend.DeploymentLike, refresh_seconds: float = REFRESH_SECONDS) -> None:
        super().__init__()
        self.deployment = deployment
        self.refresh_seconds = refresh_seconds
        self.status = None
        self.refreshes = 0
        self._fetching = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="status"):
            yield Static(f"Status: {self.deployment.plan.name}", classes="title")
            yield Static("asking the hosts…", id="st-state")
            yield Static(id="st-hosts")
            yield Static(id="st-mongo")
            yield Static(id="st-more")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(self.refresh_seconds, self.action_refresh)

    def action_refresh(self) -> None:
        # A slow round (hosts timing out) is let finish, not cancelled by the next tick:
        # otherwise a status slower than the interval would never show.
        if self._fetching:
            return
        self._fetching = True
        if self.status is None:
            self.query_one("#st-state", Static).update("asking the hosts…")
        self.fetch()

    @work(group="status", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            st = await self.deployment.status()
        except Exception as e:        # a dead host or a missing recipe must not kill the screen
            self.post_message(StatusUpdated(None, f"{type(e).__name__}: {e}".splitlines()[0]))
            return
        finally:
            self._fetching = False
        self.post_message(StatusUpdated(st))

    def on_status_updated(self, msg: StatusUpdated) -> None:
        state = self.query_one("#st-state", Static)
        if msg.status is None:
            state.update(Text(f"status unavailable: {msg.error}", style="red"))
            return
        self.status = st = msg.status
        self.refreshes += 1
        down = [h.name for h in st.hosts if not h.reachable]
        summary = Text(f"{len(st.hosts) - len(down)}/{len(st.hosts)} hosts answer",
                       style="green" if not down else "bold red")
        summary.append(f" · refreshed every {self.refresh_seconds:g}s", style="dim")
        state.update(summary)
        self.query_one("#st-hosts", Static).update(render_status(st))
        self.query_one("#st-mongo", Static).update(render_mongo(st))
        self.query_one("#st-more", Static).update(render_footer(st))

    def action_back(self) -> None:
        self.app.pop_screen()
