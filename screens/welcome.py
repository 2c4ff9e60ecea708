"""Welcome: start a new deployment, resume one found in the state folder, or check one's status."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from . import backend

INTRO = (
    "From 'what would self-hosting our chat cost?' to a production Rocket.Chat\n"
    "cluster: three MongoDB droplets and a web droplet behind nginx with TLS.\n"
    "Nothing is created until you confirm the review."
)


class WelcomeScreen(Screen):
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("c", "cost", "Cost"),
        Binding("r", "resume", "Resume"),
        Binding("s", "status", "Status"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    DEFAULT_CSS = """
    WelcomeScreen #body { padding: 1 2; }
    WelcomeScreen #choices { height: 1fr; margin-top: 1; border: round $panel; }
    WelcomeScreen #choices:focus { border: round $accent; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[backend.Found] = []
        self._offered = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("Welcome to rocket-wizard", classes="title")
            yield Static(INTRO, classes="hint")
            yield OptionList(id="choices")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_choices()
        app = self.app
        unfinished = [f for f in self.found if f.unfinished is not None and f.has_plan]
        if unfinished and app.offer_resume and not app.start_deployment and not self._offered:
            self._offered = True
            latest = max(unfinished, key=lambda f: f.unfinished.started)
            self.call_after_refresh(app.offer_resume_for, latest)

    def on_screen_resume(self) -> None:
        self.refresh_choices()

    def refresh_choices(self) -> None:
        self.found = backend.found_deployments()
        ol = self.query_one("#choices", OptionList)
        ol.clear_options()
        ol.add_option(Option("Start a new deployment", id="new"))
        ol.add_option(Option("Cost estimate: self-hosting against Slack and Mattermost", id="cost"))
        for f in self.found:
            if f.unfinished is not None:
                ol.add_option(Option(f"Resume {f.name}  ({f.describe()})", id=f"resume:{f.name}"))
            ol.add_option(Option(f"Status of {f.name}  ({f.last_status}, {f.hosts} hosts)", id=f"status:{f.name}"))
        ol.border_title = "what would you like to do?"
        ol.highlighted = 0
        ol.focus()

    def _found(self, name: str) -> backend.Found | None:
        return next((f for f in self.found if f.name == name), None)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        oid = event.option.id or ""
        kind, _, name = oid.partition(":")
        if kind == "new":
            self.action_new()
        elif kind == "cost":
            self.action_cost()
        elif kind == "resume" and (f := self._found(name)):
            self.app.offer_resume_for(f)
        elif kind == "status" and (f := self._found(name)):
            self.app.show_status(f)

    def _selected_name(self, kind: str) -> backend.Found | None:
        ol = self.query_one("#choices", OptionList)
        if ol.highlighted is not None:
            oid = ol.get_option_at_index(ol.highlighted).id or ""
            k, _, name = oid.partition(":")
            if name and (k == kind or kind == "status"):
                return self._found(name)
        candidates = [f for f in self.found if kind != "resume" or f.unfinished is not None]
        return candidates[0] if candidates else None

    def action_new(self) -> None:
        self.app.show_cost()

    def action_cost(self) -> None:
        self.app.show_cost()

    def action_resume(self) -> None:
        f = self._selected_name("resume")
        if f is None or f.unfinished is None:
            self.notify("no unfinished deployment in the state folder")
            return
        self.app.offer_resume_for(f)

    def action_status(self) -> None:
        f = self._selected_name("status")
        if f is None:
            self.notify("no deployment in the state folder yet")
            return
        self.app.show_status(f)
