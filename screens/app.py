"""The operator's journey in one terminal app: Welcome, Cost, Plan, Review, Run, Status, Done.

The app holds what the screens share (the draft answers, the validated plan,
cost settings, the deployment factory, the clock); each screen is its own module.
The engine is reached only through ``screens.backend``: ``make_deployment`` is
``wizard.deploy.Deployment`` for real and ``screens.demo.DemoDeployment`` in tests,
screenshots and ``python -m screens.demo``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from wizard.cost import default_offers
from wizard.plan import Plan, PlanError, load_plan, plan_from_dict

from . import backend


class RocketWizardApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "rocket-wizard"
    SUB_TITLE = "Rocket.Chat on DigitalOcean"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f2", "show_cost", "Cost", show=False),
    ]

    def __init__(self, answers: Path | None = None, deployment: str | None = None, *,
                 make_deployment: backend.Factory | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 check_files: bool = True, offer_resume: bool = True) -> None:
        super().__init__()
        self.make_deployment: backend.Factory = make_deployment or backend.real_deployment
        self.clock = clock
        self.check_files = check_files
        self.offer_resume = offer_resume
        self.start_deployment = deployment
        self.answers_path = answers
        self.answers_error = ""
        self.draft: dict[str, Any] = {}          # the Plan form's values (answers file pre-fills them)
        self.plan: Plan | None = None
        self.live_prices: dict[str, float] | None = None
        self.prices_note = ""
        self.cost_settings: dict[str, Any] = {"users": 150, "upkeep_hours_month": 4.0, "hourly_rate": 0.0,
                                              "exchange_rate": 1.0, "currency": "USD",
                                              "offers": default_offers()}
        if answers is not None:
            self._load_answers(answers)

    # ---- shared state ------------------------------------------------------
    def _load_answers(self, path: Path) -> None:
        import tomllib
        try:
            self.draft = tomllib.loads(Path(path).read_text())
            base = Path(path).resolve().parent
            for key in ("ssh_key", "acme_ca_bundle"):      # relative to the answers file, as load_plan reads them
                val = self.draft.get(key)
                if isinstance(val, str) and not val.startswith("~") and not Path(val).is_absolute():
                    self.draft[key] = str(base / val)
            self.plan = load_plan(path, self.check_files)
            self.draft = self.plan.model_dump(mode="json", exclude_none=True)
        except (OSError, tomllib.TOMLDecodeError, PlanError) as e:
            self.answers_error = f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)

    def draft_plan(self) -> Plan:
        """A plan for estimates before the form is valid: the draft's shape, placeholders elsewhere."""
        if self.plan is not None:
            return self.plan
        base = {"name": "draft", "domain": "chat.example.com", "admin_email": "ops@example.com"}
        shape = {k: v for k, v in self.draft.items()
                 if k in ("provider", "region", "sizes", "mongo_members", "app_hosts", "instances_per_host",
                          "backups")}
        for data in ({**base, **shape}, base):
            try:
                return plan_from_dict(data, check_files=False)
            except PlanError:
                continue
        raise AssertionError("the placeholder plan is valid")

    def deployment_for(self, plan: Plan) -> backend.DeploymentLike:
        return self.make_deployment(plan)

    # ---- screens -----------------------------------------------------------
    def on_mount(self) -> None:
        from .welcome import WelcomeScreen
        self.push_screen(WelcomeScreen())
        if self.answers_error:
            self.notify(self.answers_error, title="answers file", severity="error", timeout=10)
        if self.start_deployment:
            self.call_after_refresh(self.open_deployment, self.start_deployment)

    def open_deployment(self, name: str) -> None:
        """`rocket-wizard --deployment NAME`: resume offer if unfinished, else its status."""
        found = {f.name: f for f in backend.found_deployments()}.get(name)
        if found is None:
            self.notify(f"no deployment named {name!r} in the state folder", severity="error")
            return
        if found.unfinished is not None:
            self.offer_resume_for(found)
        else:
            self.show_status(found)

    def offer_resume_for(self, found: backend.Found) -> None:
        from .dialogs import ResumeDialog

        def chosen(resume: bool | None) -> None:
            if resume:
                self.resume(found)
        self.push_screen(ResumeDialog(found), chosen)

    def resume(self, found: backend.Found) -> None:
        from .run import RunScreen
        try:
            plan = backend.saved_plan(found, self.check_files)
        except PlanError as e:
            self.notify(str(e), title="cannot resume", severity="error", timeout=10)
            return
        self.plan = plan
        self.push_screen(RunScreen(self.deployment_for(plan), resume=True))

    def show_status(self, found: backend.Found) -> None:
        from .status import StatusScreen
        try:
            plan = backend.saved_plan(found, self.check_files)
        except PlanError as e:
            self.notify(str(e), title="no status", severity="error", timeout=10)
            return
        self.push_screen(StatusScreen(self.deployment_for(plan)))

    def show_cost(self) -> None:
        from .cost import CostScreen
        if not isinstance(self.screen, CostScreen):
            self.push_screen(CostScreen())

    def action_show_cost(self) -> None:
        self.show_cost()

    def start_new(self) -> None:
        from .plan_form import PlanScreen
        self.push_screen(PlanScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New deployment", "Fill in a plan for a new cluster", self.start_new)
        yield SystemCommand("Cost estimate", "Self-hosting against Slack and Mattermost",
                            self.show_cost)
        for f in backend.found_deployments():
            yield SystemCommand(f"Status of {f.name}", f.describe(), lambda f=f: self.show_status(f))
            if f.unfinished is not None:
                yield SystemCommand(f"Resume {f.name}", "Continue the unfinished run",
                                    lambda f=f: self.offer_resume_for(f))

    async def action_quit(self) -> None:
        from .run import RunScreen
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen) and screen.running:
                await screen.stop_run()       # state written as "interrupted" before we leave
        self.exit(0)


def main(answers: Path | None = None, deployment: str | None = None) -> int:
    app = RocketWizardApp(answers=answers, deployment=deployment)
    app.run()
    return app.return_code or 0


if __name__ == "__main__":
    raise SystemExit(main())
