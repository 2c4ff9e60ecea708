"""The run's log: Textual's ``Log`` fed in batches.

An engine streaming a package install can emit thousands of lines a second. A
widget write per line would schedule a refresh per line; instead lines collect
in a plain list and are flushed to the ``Log`` on a timer (about 30 times a
second), so the cost per frame is one ``write_lines`` however fast lines come.
``Log`` renders only the visible lines and drops the oldest past ``max_lines``,
so memory stays flat on a long run (bench/log_pane.py measures both).
"""

from __future__ import annotations

from textual.widgets import Log

FLUSH_INTERVAL = 1 / 30
MAX_LINES = 5000
HOST_WIDTH = 7


class LogPane(Log):
    DEFAULT_CSS = """
    LogPane { height: 1fr; border: round $panel; padding: 0 1; }
    LogPane:focus { border: round $accent; }
    """

    def __init__(self, *, max_lines: int = MAX_LINES, flush_interval: float = FLUSH_INTERVAL, **kw):
        super().__init__(max_lines=max_lines, auto_scroll=True, **kw)
        self._pending: list[str] = []
        self._flush_interval = flush_interval
        self.lines_received = 0

    def on_mount(self) -> None:
        self.border_title = "log"
        self.set_interval(self._flush_interval, self.flush)

    def add(self, host: str, text: str) -> None:
        """Queue one line (cheap: no refresh until the next flush)."""
        self.lines_received += 1
        prefix = f"{host[:HOST_WIDTH]:<{HOST_WIDTH}} " if host else "wizard  "
        for part in text.splitlines():
            if part.strip():              # apt and friends print many blank lines: noise here
                self._pending.append(prefix + part.rstrip())

    def flush(self) -> None:
        if not self._pending:
            return
        batch = self._pending
        if len(batch) > self.max_lines:
            batch = batch[-self.max_lines:]      # older lines would be pruned at once anyway
        self._pending = []
        self.write_lines(batch)

    @property
    def pending(self) -> int:
        return len(self._pending)
