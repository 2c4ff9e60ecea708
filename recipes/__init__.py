"""The runbook, section by section, in the order it is applied.

Each module holds one section of the runbook as Steps grouped in a Phase. A module
that is missing (e.g. a trimmed install) is simply not part of the run.
"""

from __future__ import annotations

import importlib

from wizard.engine import Phase

# module name -> attribute holding its Phase (or list of Phases)
_ORDER = ["hardening", "mongodb", "rocketchat", "nginx", "tls"]


def _load() -> tuple[list[Phase], list]:
    phases: list[Phase] = []
    probes: list = []
    for name in _ORDER:
        try:
            mod = importlib.import_module(f"recipes.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"recipes.{name}":
                continue
            raise
        for attr in ("PHASE", "PHASES"):
            val = getattr(mod, attr, None)
            if isinstance(val, Phase):
                phases.append(val)
            elif isinstance(val, (list, tuple)):
                phases.extend(val)
        probe = getattr(mod, "status_probe", None)
        if probe is not None:
            probes.append(probe)
    return phases, probes


PHASES, STATUS_PROBES = _load()
