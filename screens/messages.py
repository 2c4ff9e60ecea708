"""Typed messages between workers, widgets and screens (all in one place)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from wizard import events as ev


class EngineEvent(Message):
    """One engine event (everything but log lines, which go to the log pane in batches)."""

    def __init__(self, event: ev.Event) -> None:
        super().__init__()
        self.event = event


class RunEnded(Message):
    """The apply worker returned, failed to start, or was cancelled."""

    def __init__(self, ok: bool, interrupted: bool = False, error: str = "", result: Any = None) -> None:
        super().__init__()
        self.ok = ok
        self.interrupted = interrupted
        self.error = error
        self.result = result


class StatusUpdated(Message):
    def __init__(self, status: Any = None, error: str = "") -> None:
        super().__init__()
        self.status = status
        self.error = error


class PricesLoaded(Message):
    """Live droplet prices (slug -> USD/month), or None with the reason they are not live."""

    def __init__(self, prices: dict[str, float] | None, note: str = "") -> None:
        super().__init__()
        self.prices = prices
        self.note = note


class PlanChanged(Message):
    """The Plan form produced a valid plan (or ``None`` while it is invalid)."""

    def __init__(self, plan: Any, errors: dict[str, str]) -> None:
        super().__init__()
        self.plan = plan
        self.errors = errors
