"""Plan: a form bound to ``wizard.plan.Plan``, the model the answers file fills too.

Every change re-validates the whole form with the model itself (no second set
of rules here) and puts each field's message under that field. The form's
values are the app's draft, so an answers file pre-fills it and going back and
forth keeps what was typed.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static

from wizard import catalog, versions
from wizard.plan import Plan, save_plan

NONE = "-"

# key, label, kind, choices (for selects) or placeholder (for inputs)
FIELDS: list[tuple[str, str, str, Any]] = [
    ("name", "Deployment name", "input", "e.g. acme-chat"),
    ("provider", "Provider", "select", [("DigitalOcean", "digitalocean"), ("lab (nspawn)", "lab")]),
    ("region", "Region", "select", [(f"{k}  {v}", k) for k, v in catalog.REGIONS.items()]),
    ("image", "Image", "select", [(v[2], k) for k, v in catalog.IMAGES.items()]),
    ("sizes.mongo", "MongoDB droplet", "select",
     [(f"{s.slug} {s.price_monthly:g} USD/mo", s.slug) for s in catalog.SIZES.values()]),
    ("sizes.web", "Web droplet", "select",
     [(f"{s.slug} {s.price_monthly:g} USD/mo", s.slug) for s in catalog.SIZES.values()]),
    ("mongo_members", "MongoDB members", "select",
     [("3 (production)", "3"), ("5", "5"), ("1 (trial, no failover)", "1")]),
    ("app_hosts", "Web hosts", "input", "1"),
    ("instances_per_host", "Instances per host", "input", "blank: one per vCPU, at least 2"),
    ("domain", "Domain", "input", "chat.example.com"),
    ("admin_email", "Admin email", "input", "ops@example.com"),
    ("admin_username", "Admin user name", "input", "admin"),
    ("sudo_user", "Your sudo user", "input", "rocket"),
    ("ssh_key", "SSH private key", "input", "~/.ssh/id_ed25519"),
    ("rocketchat_version", "Rocket.Chat version", "input", "8.2.0"),
    ("mongodb_version", "MongoDB series", "select", [(v, v) for v in versions.INSTALLABLE_MONGO]),
    ("backups", "Droplet backups", "select",
     [("weekly (+20%)", "weekly"), ("daily (+30%)", "daily"), ("none", "none")]),
    ("licence", "Rocket.Chat licence", "select",
     [("not set", NONE), ("starter", "starter"), ("pro", "pro"), ("enterprise", "enterprise")]),
    ("timezone", "Time zone", "input", "UTC"),
    ("acme_server", "ACME server", "input", "blank: Let's Encrypt"),
    ("mirrors.rocketchat_releases", "Release mirror", "input", "blank: releases.rocket.chat"),
    ("mirrors.mongodb_apt", "MongoDB apt mirror", "input", "blank: repo.mongodb.org"),
    ("mirrors.node", "Node mirror", "input", "blank: nodejs.org/dist"),
    ("mirrors.deno", "Deno mirror", "input", "blank: GitHub releases"),
]
KEYS = [f[0] for f in FIELDS]
ADVANCED_FROM = "timezone"


def wid(key: str) -> str:
    return "f-" + key.replace(".", "-").replace("_", "-")


def _get(d: dict, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)
    return d


def _set(d: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def default_of(key: str) -> Any:
    parts = key.split(".")
    field = Plan.model_fields.get(parts[0])
    if field is None or field.is_required():
        return None
    val = field.get_default(call_default_factory=True)
    for p in parts[1:]:
        val = getattr(val, p, None)
    return val


def message_of(e: dict) -> str:
    typ = e["type"]
    msg = e["msg"].removeprefix("Value error, ")
    if typ == "missing":
        return "required"
    if typ == "int_parsing":
        return "a whole number, please"
    if typ == "literal_error":
        return msg.replace("Input should be", "accepted:")
    return msg


def validate(data: dict, check_files: bool = True) -> tuple[Plan | None, dict[str, str]]:
    """The plan, or each field's first error (cross-field errors go to the field they name)."""
    try:
        return Plan.model_validate(data, context={"check_files": check_files}), {}
    except ValidationError as err:
        errors: dict[str, str] = {}
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"])
            msg = message_of(e)
            if loc not in KEYS:
                head, sep, rest = msg.partition(":")
                if sep and head.strip() in KEYS:
                    loc, msg = head.strip(), rest.strip()
                elif loc.split(".")[0] in KEYS:
                    loc = loc.split(".")[0]
                else:
                    loc, msg = "_form", f"{loc}: {msg}" if loc else msg
            errors.setdefault(loc, msg)
        return None, errors


class PlanScreen(Screen):
    BINDINGS = [
        Binding("ctrl+n", "next", "Next: review"),
        Binding("ctrl+s", "save", "Save answers"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+g", "first_error", "Go to error"),
    ]
    DEFAULT_CSS = """
    PlanScreen #form { padding: 0 1; height: 1fr; }
    PlanScreen #summary { height: 1; padding: 0 1; background: $panel; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.plan: Plan | None = None
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        draft = self.app.draft
        yield Header()
        with VerticalScroll(id="form"):
            yield Static("Plan: what will be built (Enter moves on, ^n when valid)", classes="title")
            for key, label, kind, extra in FIELDS:
                if key == ADVANCED_FROM:
                    yield Static("Advanced (blank = defaults)", classes="section")
                value = _get(draft, key)
                if value is None:
                    value = default_of(key)
                if kind == "select":
                    choices = [(lbl, val) for lbl, val in extra]
                    value = NONE if value is None and key == "licence" else str(value)
                    if value not in [v for _, v in choices]:
                        value = choices[0][1]
                    widget = Select(choices, value=value, allow_blank=False, compact=True, id=wid(key))
                else:
                    text = "" if value is None else str(value)
                    widget = Input(text, placeholder=extra, compact=True, id=wid(key))
                yield Horizontal(Label(label, classes="label"), widget, classes="row", id=f"row-{wid(key)}")
                yield Static("", classes="field-error", id=f"err-{wid(key)}")
        yield Static("", id="summary")
        yield Footer()

    def on_mount(self) -> None:
        self.revalidate()
        self.query_one(f"#{wid('name')}", Input).focus()

    # ---- values and validation ---------------------------------------------
    def values(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, _label, kind, _extra in FIELDS:
            w = self.query_one(f"#{wid(key)}")
            v = w.value if kind == "select" else w.value.strip()
            if v in ("", NONE, Select.BLANK, None):
                continue
            _set(data, key, v)
        return data

    @on(Input.Changed)
    @on(Select.Changed)
    def revalidate(self, _event=None) -> None:
        data = self.values()
        self.app.draft = data
        plan, errors = validate(data, self.app.check_files)
        self.plan, self.errors = plan, errors
        self.app.plan = plan
        for key in KEYS:
            msg = errors.get(key, "")
            err = self.query_one(f"#err-{wid(key)}", Static)
            # "required" on a field nobody touched yet is noise; say it in the summary instead
            shown = bool(msg) and not (msg == "required" and not _get(data, key))
            err.update(msg if shown else "")
            err.set_class(shown, "shown")
            self.query_one(f"#row-{wid(key)}").set_class(bool(msg), "invalid")
        self.query_one("#summary", Static).update(self.summary())

    def summary(self) -> str:
        if self.plan is not None:
            p = self.plan
            r = self.app.deployment_for(p).review(self.app.live_prices)
            lic = " + licence" if p.needs_scalability_licence else ""
            return (f"[green]valid[/]: {len(p.hosts())} hosts, {p.instances * p.app_hosts} instances, "
                    f"{r.total_monthly:.2f} USD/month{lic} · ^n reviews it")
        missing = [k for k, m in self.errors.items() if m == "required"]
        others = [k for k, m in self.errors.items() if m != "required"]
        parts = []
        if others:
            parts.append(f"[red]{len(others)} to fix[/]: {', '.join(others[:3])}")
        if missing:
            parts.append(f"required: {', '.join(missing)}")
        if "_form" in self.errors:
            parts.append(self.errors["_form"])
        return "; ".join(parts)

    # ---- keys ----------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_next()

    def action_first_error(self) -> None:
        self.revalidate()          # keys typed just before may not have been validated yet
        for key in KEYS:
            if key in self.errors:
                self.query_one(f"#{wid(key)}").focus()
                return

    def action_next(self) -> None:
        self.revalidate()
        if self.plan is None:
            self.notify("fix the highlighted fields first", severity="warning")
            self.action_first_error()
            return
        from .review import ReviewScreen
        self.app.push_screen(ReviewScreen(self.plan))

    def action_save(self) -> None:
        if self.plan is None:
            self.notify("the plan is not valid yet", severity="warning")
            return
        from pathlib import Path
        path = Path.cwd() / f"{self.plan.name}.toml"
        try:
            save_plan(self.plan, path)
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}", severity="error")
            return
        self.notify(f"answers saved to {path}")

    def action_back(self) -> None:
        self.app.pop_screen()
