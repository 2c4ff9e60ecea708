"""Done: the URL, where the admin credentials are, and what to do next."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from . import backend


def next_steps(d: backend.DeploymentLike) -> Text:
    p = d.plan
    web = [h for h in d.store.state.hosts.values() if h.role == "web"]
    ip = web[0].public_ip if web and web[0].public_ip else "<web1's public address>"
    t = Text()
    t.append("Your Rocket.Chat is at  ", style="bold")
    t.append(f"https://{p.domain}\n\n", style="bold green underline")
    t.append("Admin: ", style="bold")
    once = getattr(d, "admin_credentials_once", None)
    creds = once() if once else None          # the generated password is shown this one time
    if creds:
        t.append(f"{creds[0]} / ", style="bold")
        t.append(f"{creds[1]}", style="bold yellow")
        t.append("  (shown once: note it now)\n")
    t.append(f"{p.admin_username} ({p.admin_email}); the password is\n  rocketchat_admin_password in {d.store.secrets.path}\n"
             "  (0600, with the other generated secrets; back it up with the state)\n\n")
    t.append("Next steps\n", style="bold")
    steps = [
        f"DNS: {p.domain} A {ip} (before the certificate)",
        "Log in, change the admin password, invite your team",
    ]
    if p.needs_scalability_licence:
        steps.append(f"{p.instances * p.app_hosts} instances: a licence with scalability (Starter: <=50 users)")
    steps += [
        f"Back up {d.store.dir} (state, secrets, plan)",
        f"Health: rocket-wizard status --deployment {p.name} (or s here)",
        "Run again to converge: hand-changed settings are put back",
    ]
    for i, s in enumerate(steps, 1):
        t.append(f" {i}. {s}\n")
    return t


class DoneScreen(Screen):
    BINDINGS = [
        Binding("s", "status", "Status"),
        Binding("escape", "back", "Back to the run"),
        Binding("q", "app.quit", "Quit", show=False),
    ]
    DEFAULT_CSS = """
    DoneScreen #done { padding: 1 2; }
    """

    def __init__(self, deployment: backend.DeploymentLike) -> None:
        super().__init__()
        self.deployment = deployment

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="done"):
            yield Static("Done", classes="title")
            yield Static(next_steps(self.deployment), id="next-steps")
        yield Footer()

    def action_status(self) -> None:
        from .status import StatusScreen
        self.app.push_screen(StatusScreen(self.deployment))

    def action_back(self) -> None:
        self.app.pop_screen()
