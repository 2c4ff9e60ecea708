"""The run's status board: a grid of hosts x phases, one mark and a time per cell.

``BoardModel`` folds engine events into cell states and counts (no Textual, so
tests can feed it events directly); ``StatusBoard`` draws it as a Rich table and
redraws once a second so running cells' times move.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from wizard import events as ev

MARKS = {
    "pending": ("·", "dim"),
    "running": ("▶", "bold yellow"),
    "ok": ("✓", "green"),
    "changed": ("✚", "bold green"),
    "skipped": ("-", "cyan"),
    "failed": ("✗", "bold red"),
    "interrupted": ("‖", "magenta"),
}
# A cell's state is the "worst" of its steps' states.
RANK = {"pending": 0, "ok": 1, "skipped": 1, "changed": 2, "running": 3, "interrupted": 4, "failed": 5}
PROVISION = "provision"


@dataclass
class Cell:
    state: str = "pending"
    elapsed: float = 0.0             # finished steps' time
    running_since: float | None = None
    steps_done: int = 0
    steps_running: set[str] = field(default_factory=set)
    failed: bool = False


def short_time(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}"
    return f"{s // 3600}h{(s % 3600) // 60:02d}"


class BoardModel:
    def __init__(self, hosts: list[str] | None = None, phases: list[tuple[str, str]] | None = None,
                 total_steps: int = 0, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.hosts: list[str] = list(hosts or [])
        self.phases: list[tuple[str, str]] = list(phases or [])   # (id, title)
        self.cells: dict[tuple[str, str], Cell] = {}
        self.total_steps = total_steps
        self.done = 0                   # steps finished (any status) in this run, resumed ones included
        self.done_now = 0               # finished by work in this session (for the ETA)
        self.failed = 0
        self.current = ""               # the step running most recently started
        self.started: float | None = None
        self.finished: float | None = None
        self.failures: list[ev.StepFinished] = []
        self.progress_text = ""

    # -- shape
    def _phase(self, pid: str, title: str = "") -> None:
        if pid not in [p for p, _ in self.phases]:
            if pid == PROVISION:
                self.phases.insert(0, (pid, title or "Provision"))
            else:
                self.phases.append((pid, title or pid))

    def _host(self, host: str) -> None:
        if host and host not in self.hosts:
            self.hosts.append(host)

    def expect(self, host: str, phase: str, title: str = "") -> None:
        """A cell that will run: drawn as pending before its phase starts."""
        self._phase(phase, title)
        self._host(host)
        self.cell(host, phase)

    def cell(self, host: str, phase: str) -> Cell:
        return self.cells.setdefault((host, phase), Cell())

    # -- events
    def apply(self, e: ev.Event) -> None:
        now = self.clock()
        if isinstance(e, ev.RunStarted):
            self.started, self.finished = now, None
            self.done = self.done_now = self.failed = 0
            self.failures = []
            for h in e.hosts:
                self._host(h)
            for c in self.cells.values():
                # a resumed run re-reports done steps with no time: keep what they took
                if not e.resumed:
                    c.elapsed, c.steps_done = 0.0, 0
                c.state, c.running_since = "pending", None
                c.steps_running.clear()
        elif isinstance(e, ev.PhaseStarted):
            self._phase(e.phase, e.title)
            for h in e.hosts:
                self._host(h)
                self.cell(h, e.phase)
        elif isinstance(e, ev.StepStarted):
            self._phase(e.phase)
            self._host(e.host)
            c = self.cell(e.host, e.phase)
            if not c.steps_running:
                c.running_since = now
            c.steps_running.add(e.step)
            if RANK["running"] >= RANK[c.state]:
                c.state = "running"
            self.current = f"{e.host}: {e.title}"
        elif isinstance(e, ev.StepFinished):
            self._phase(e.phase)
            self._host(e.host)
            c = self.cell(e.host, e.phase)
            c.steps_running.discard(e.step)
            c.elapsed += e.elapsed
            if not c.steps_running:
                c.running_since = None
            c.steps_done += 1
            self.done += 1
            if e.elapsed > 0:
                self.done_now += 1
            if e.status == "failed":
                self.failed += 1
                self.failures.append(e)
                c.state = "failed"
            elif not c.steps_running and c.state != "failed":
                c.state = e.status if c.state in ("running", "pending", "ok", "skipped") else c.state
                if c.state == "ok" and e.status == "changed":
                    c.state = "changed"
        elif isinstance(e, ev.Progress):
            self.progress_text = f"{e.host or 'wizard'}: {e.text}"
        elif isinstance(e, ev.RunFinished):
            self.finished = now
            if e.interrupted:
                for c in self.cells.values():
                    if c.state == "running":
                        c.state = "interrupted"
                        c.steps_running.clear()
                        c.running_since = None

    # -- derived
    def cell_elapsed(self, c: Cell) -> float:
        t = c.elapsed
        if c.running_since is not None:
            t += self.clock() - c.running_since
        return t

    @property
    def fraction(self) -> float:
        if self.total_steps <= 0:
            return 0.0
        return min(1.0, self.done / self.total_steps)

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or self.clock()) - self.started

    def eta(self) -> float | None:
        """Seconds left at the pace of the steps run in this session."""
        remaining = self.total_steps - self.done
        if self.finished is not None or remaining <= 0:
            return 0.0 if self.finished is not None else None
        if self.done_now == 0:
            return None
        return self.elapsed() / self.done_now * remaining


class StatusBoard(Widget):
    DEFAULT_CSS = """
    StatusBoard { height: auto; }
    """

    def __init__(self, model: BoardModel, **kw):
        super().__init__(**kw)
        self.model = model

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.model.hosts) + 1

    def render(self) -> Table:
        m = self.model
        width = self.content_size.width or 80
        host_w = max([4] + [len(h) for h in m.hosts])
        n = max(1, len(m.phases))
        col_w = max(6, min(12, (width - host_w - 1) // n - 1))
        t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), expand=False,
                  header_style="bold")
        t.add_column("host", width=host_w, no_wrap=True)
        for pid, _title in m.phases:
            t.add_column(pid[:col_w], width=col_w, no_wrap=True, overflow="crop")
        for h in m.hosts:
            row: list[Text | str] = [h]
            for pid, _ in m.phases:
                c = m.cells.get((h, pid))
                if c is None:
                    row.append(Text(" ", style="dim"))
                    continue
                mark, style = MARKS[c.state]
                tx = Text(mark, style=style)
                secs = m.cell_elapsed(c)
                if c.state != "pending" and (secs >= 0.5 or c.state == "running"):
                    tx.append(" " + short_time(secs), style="dim" if c.state != "failed" else "red")
                row.append(tx)
            t.add_row(*row)
        return t
