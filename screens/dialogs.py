"""Modal dialogs: the resume offer and a plain confirmation."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from . import backend

_DIALOG_CSS = """
    {name} {{ align: center middle; }}
    {name} > Vertical {{ width: 72; max-width: 100%; height: auto; max-height: 100%;
                        border: thick $accent; background: $surface; padding: 1 2; }}
    {name} Horizontal {{ height: auto; margin-top: 1; align-horizontal: right; }}
    {name} Button {{ margin-left: 1; }}
"""


class ResumeDialog(ModalScreen[bool]):
    """An unfinished run was found: continue from the first unfinished step?"""

    BINDINGS = [
        Binding("r", "answer(True)", "Resume"),
        Binding("escape,n", "answer(False)", "Not now"),
    ]
    DEFAULT_CSS = _DIALOG_CSS.format(name="ResumeDialog")

    def __init__(self, found: backend.Found) -> None:
        super().__init__()
        self.found = found

    def summary(self) -> str:
        f = self.found
        run = f.unfinished
        assert run is not None
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.started))
        lines = [f"Deployment {f.name!r} has an unfinished run ({run.status}, started {when}"
                 + (f", resumed {run.resumed}x" if run.resumed else "") + ")."]
        phases = backend.done_by_phase(run)
        if phases:
            lines.append("Done so far, by phase:")
            for phase, (done, seen) in phases.items():
                mark = "✓" if done == seen else "…"
                lines.append(f"  {mark} {phase:<12} {done}/{seen} steps")
        failed = [k for k, s in run.steps.items() if s.status in ("failed", "interrupted")]
        if failed:
            lines.append(f"Continues at: {failed[0]}")
        lines.append("Resuming skips what is done and continues from the first unfinished step.")
        if not f.has_plan:
            lines.append("(no saved plan beside the state: cannot resume from here)")
        return "\n".join(lines)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Resume an unfinished deployment?", classes="title")
            yield Static(self.summary(), id="resume-summary")
            with Horizontal():
                yield Button("Resume (r)", variant="primary", id="yes", disabled=not self.found.has_plan)
                yield Button("Not now (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.found.has_plan else "#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(bool(yes) and self.found.has_plan)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("escape,n", "answer(False)", "No"),
    ]
    DEFAULT_CSS = _DIALOG_CSS.format(name="ConfirmDialog")

    def __init__(self, question: str, detail: str = "", yes: str = "Yes (y)", no: str = "No (esc)") -> None:
        super().__init__()
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="title")
            if self.detail:
                yield Static(self.detail)
            with Horizontal():
                yield Button(self.yes, variant="warning", id="yes")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(bool(yes))
