"""Run: the live deployment. A hosts x phases board, the current step, progress
with an ETA, the failing command and its output, and the log pane.

``Deployment.apply`` runs in an async worker on the app's loop; it calls
``_emit`` for every engine event. Log lines go straight into the log pane's
batch (flushed ~30 times a second); every other event is posted as an
``EngineEvent`` message and folded into the board's model.

Ctrl-C stops the run: the worker is cancelled, the engine records the run as
interrupted (what is done stays done) and the next start offers to resume.
"""

from __future__ import annotations

import asyncio
import threading

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual.worker import Worker

from wizard import events as ev
from wizard.plan import save_plan
from wizard.state import LockedError

from . import backend
from .messages import EngineEvent, RunEnded
from .widgets.log_pane import LogPane
from .widgets.status_board import MARKS, BoardModel, StatusBoard, short_time


def progress_line(m: BoardModel, ok: bool, width: int = 20) -> str:
    frac = 1.0 if ok else m.fraction
    filled = round(frac * width)
    bar = "█" * filled + "░" * (width - filled)
    eta = m.eta()
    eta_txt = "" if m.finished is not None else (f" · ETA {short_time(eta)}" if eta is not None else " · ETA …")
    total = max(m.total_steps, m.done)
    return f"{bar} {frac:4.0%}  {m.done}/{total} steps · {short_time(m.elapsed())}{eta_txt}"


class RunScreen(Screen):
    BINDINGS = [
        Binding("ctrl+c", "interrupt", "Stop", priority=True),
        Binding("r", "retry", "Retry / resume"),
        Binding("k", "skip", "Skip step"),
        Binding("enter", "finish", "Finish"),
        Binding("s", "status", "Status"),
        Binding("q", "quit_app", "Quit", show=False),
    ]
    DEFAULT_CSS = """
    RunScreen #board { height: auto; max-height: 9; padding: 0 1; }
    RunScreen #current { height: 1; padding: 0 1; color: $text; }
    RunScreen #progress { height: 1; padding: 0 1; color: $accent; }
    RunScreen #failure { height: auto; max-height: 8; border: round $error; padding: 0 1; display: none; }
    RunScreen #failure.shown { display: block; }
    RunScreen #log { height: 1fr; min-height: 4; }
    """

    def __init__(self, deployment: backend.DeploymentLike, resume: bool = True) -> None:
        super().__init__()
        self.deployment = deployment
        self.resume = resume
        self.model = BoardModel()
        self._worker: Worker | None = None
        self.ok = False
        self.failed = False
        self.interrupted = False
        self.error = ""
        self._loop_thread: int | None = None
        self._log: LogPane | None = None

    # ---- layout ------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield StatusBoard(self.model, id="board")
        yield Static(id="current")
        yield Static(id="progress")
        with VerticalScroll(id="failure"):
            yield Static(id="failure-text")
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.model.clock = self.app.clock
        plan = self.deployment.plan
        self.app.sub_title = f"run: {plan.name}"
        cells, total = backend.expected_cells(plan, backend.phases_of(self.deployment))
        self.model.total_steps = total
        for host, pid, title in cells:
            self.model.expect(host, pid, title)
        self._loop_thread = threading.get_ident()
        self._log = self.query_one(LogPane)
        self.set_interval(1.0, self.update_lines)
        self.start_run(self.resume)

    # ---- the worker --------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.is_finished

    def start_run(self, resume: bool = True, phases: list | None = None) -> None:
        self.ok = self.failed = self.interrupted = False
        self.error = ""
        self._show_failure("")
        self._worker = self.run_worker(self._apply(resume, phases), group="apply", exclusive=True,
                                       exit_on_error=False, name="apply")
        self.refresh_bindings()
        self.update_lines()

    async def _apply(self, resume: bool, phases: list | None) -> None:
        d = self.deployment
        try:
            d.store.lock()
        except LockedError as e:
            self.post_message(RunEnded(False, error=str(e)))
            return
        try:
            if d.store.notice:
                self.query_one(LogPane).add("", d.store.notice)
            save_plan(d.plan, d.store.dir / "plan.toml")      # what `--deployment NAME` and resume read
            kw = {"phases": phases} if phases is not None else {}
            result = await d.apply(self._emit, resume=resume, **kw)
            self.post_message(RunEnded(bool(result.ok), result=result))
        except asyncio.CancelledError:
            self.post_message(RunEnded(False, interrupted=True))
            raise
        except Exception as e:   # shown on the screen, never a traceback over the UI
            self.post_message(RunEnded(False, error=f"{type(e).__name__}: {e}".splitlines()[0]))
        finally:
            d.store.unlock()

    def _emit(self, e: ev.Event) -> None:
        if isinstance(e, ev.LogLine):
            self._log.add(e.host, e.text)      # hot path: no DOM query per line
            return
        self._log_event(e)                     # here, not in the handler: keeps the log in order
        self.post_message(EngineEvent(e))      # thread-safe: the provider reports from a thread

    async def stop_run(self) -> None:
        """Cancel the run and wait until the engine has written the state."""
        w = self._worker
        if w is None or w.is_finished:
            return
        w.cancel()
        try:
            await w.wait()
        except Exception:
            pass

    # ---- events ------------------------------------------------------------
    def _log_event(self, e: ev.Event) -> None:
        log = self._log
        if isinstance(e, ev.StepFinished) and e.status == "failed":
            log.add(e.host, f"FAILED {e.step}: {e.reason}")
            if e.command:
                log.add(e.host, f"$ {e.command}")
            if e.output:
                log.add(e.host, e.output)
        elif isinstance(e, ev.Progress):
            log.add(e.host, e.text)
        elif isinstance(e, ev.ResourceRecorded):
            log.add("", f"recorded {e.kind} {e.id} ({e.name})")
        elif isinstance(e, ev.RunStarted) and e.resumed:
            log.add("", f"resuming run {e.run_id}: steps already done are skipped")
        elif isinstance(e, ev.RunFinished):
            state = "interrupted" if e.interrupted else ("done" if e.ok else "failed")
            log.add("", f"{state}: {e.changed} changed, {e.failed} failed in {e.elapsed:.1f}s")

    def on_engine_event(self, msg: EngineEvent) -> None:
        e = msg.event
        self.model.apply(e)
        self.query_one(StatusBoard).refresh(layout=isinstance(e, (ev.RunStarted, ev.PhaseStarted)))
        self.update_lines()

    def on_run_ended(self, msg: RunEnded) -> None:
        self.ok, self.interrupted, self.error = msg.ok, msg.interrupted, msg.error
        self.failed = not msg.ok and not msg.interrupted
        if self.model.finished is None:
            self.model.finished = self.app.clock()
        if self.failed:
            self._show_failure(self.failure_text())
        self.query_one(LogPane).flush()
        self.refresh_bindings()
        self.update_lines()

    # ---- drawing -----------------------------------------------------------
    def failure_text(self) -> Text:
        t = Text()
        if self.error:
            t.append(self.error, style="bold red")
            return t
        for f in self.model.failures[:2]:
            t.append(f"✗ {f.host}: {f.step}: {f.reason}\n", style="bold red")
            if f.command:
                t.append(f"$ {f.command}\n", style="bold")
            if f.output:
                t.append("\n".join(f.output.splitlines()[-6:]) + "\n", style="dim")
        if not self.model.failures:
            t.append("the run failed before any step (see the log)", style="bold red")
        t.append("r retry from the failed step · "
                 + ("k skip it this time · " if self._can_skip() else "")
                 + "q quit (state kept)", style="italic")
        return t

    def _show_failure(self, text) -> None:
        panel = self.query_one("#failure")
        self.query_one("#failure-text", Static).update(text)
        panel.set_class(bool(text), "shown")
        panel.border_title = "failure" if text else ""

    def update_lines(self) -> None:
        m = self.model
        if self.running:
            cur = Text("▶ ", style=MARKS["running"][1])
            cur.append(m.current or "starting…")
            if m.progress_text and not m.current:
                cur.append(f"  {m.progress_text}", style="dim")
        elif self.ok:
            cur = Text("✓ done: Enter shows the URL and next steps", style="bold green")
        elif self.interrupted:
            cur = Text("‖ stopped: r resumes from the first unfinished step, q quits", style="bold magenta")
        elif self.failed:
            cur = Text("✗ failed: r retries", style="bold red")
        else:
            cur = Text("")
        self.query_one("#current", Static).update(cur)
        self.query_one("#progress", Static).update(progress_line(m, self.ok))

    # ---- actions -----------------------------------------------------------
    def _failed_step(self) -> ev.StepFinished | None:
        return self.model.failures[0] if self.model.failures else None

    def _can_skip(self) -> bool:
        f = self._failed_step()
        return (f is not None and f.phase != "provision" and backend.supports_phases(self.deployment)
                and bool(backend.phases_of(self.deployment)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "interrupt":
            return True
        if action == "retry":
            return not self.running and (self.failed or self.interrupted)
        if action == "skip":
            return not self.running and self.failed and self._can_skip()
        if action == "finish":
            return not self.running and self.ok
        if action == "quit_app":
            return not self.running
        return True

    async def action_interrupt(self) -> None:
        if self.running:
            self.query_one(LogPane).add("", "Ctrl-C: stopping; the state keeps every finished step")
            await self.stop_run()
        else:
            self.app.exit(0)

    async def action_quit_app(self) -> None:
        await self.app.action_quit()

    def action_retry(self) -> None:
        if not self.running:
            self.start_run(resume=True)

    def action_skip(self) -> None:
        f = self._failed_step()
        if f is None or self.running or not self._can_skip():
            return
        phases = backend.skip_step(backend.phases_of(self.deployment), f.step)
        self.query_one(LogPane).add("", f"skipping {f.step} this time; a later run checks it again")
        self.start_run(resume=True, phases=phases)

    def action_finish(self) -> None:
        if self.ok:
            from .done import DoneScreen
            self.app.push_screen(DoneScreen(self.deployment))

    def action_status(self) -> None:
        from .status import StatusScreen
        self.app.push_screen(StatusScreen(self.deployment))
