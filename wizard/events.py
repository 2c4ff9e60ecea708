"""Typed events the engine emits. The CLI prints them; the TUI turns them into
Textual messages. Nothing here knows about either."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Union

StepStatus = Literal["ok", "changed", "skipped", "failed"]


@dataclass(frozen=True)
class _Event:
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(_Event):
    run_id: str
    resumed: bool
    phases: tuple[str, ...]
    hosts: tuple[str, ...]
    dry_run: bool = False


@dataclass(frozen=True)
class PhaseStarted(_Event):
    phase: str
    title: str
    hosts: tuple[str, ...]
    steps: tuple[str, ...]


@dataclass(frozen=True)
class PhaseFinished(_Event):
    phase: str
    failed: bool


@dataclass(frozen=True)
class StepStarted(_Event):
    phase: str
    step: str
    host: str
    title: str


@dataclass(frozen=True)
class StepFinished(_Event):
    phase: str
    step: str
    host: str
    status: StepStatus
    reason: str
    elapsed: float
    # for failures: the failing command and its output (already redacted)
    command: str = ""
    output: str = ""


@dataclass(frozen=True)
class LogLine(_Event):
    host: str          # "" for the wizard itself
    text: str
    stream: Literal["out", "err", "info"] = "info"


@dataclass(frozen=True)
class ResourceRecorded(_Event):
    kind: str
    id: str
    name: str


@dataclass(frozen=True)
class Progress(_Event):
    """Free-form progress from a long wait (droplets booting, replica set electing)."""
    host: str
    text: str


@dataclass(frozen=True)
class RunFinished(_Event):
    run_id: str
    ok: bool
    changed: int
    failed: int
    elapsed: float
    round_trips: dict[str, int]
    interrupted: bool = False


Event = Union[RunStarted, PhaseStarted, PhaseFinished, StepStarted, StepFinished,
              LogLine, ResourceRecorded, Progress, RunFinished]
Emit = Callable[[Event], None]
