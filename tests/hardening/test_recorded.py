"""Every step's decision on recorded facts (Debian 12 from the lab, Ubuntu 24.04 by hand).

Data-driven like pyinfra's operation tests: data/cases/<id>.json holds the facts
file, the changed facts, the host and plan, and the expected outcome and ops
(see cases.py). No SSH.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cases import CASES, run_case

CASE_DIR = Path(__file__).with_name("data") / "cases"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path, recorded_plan):
    expected = json.loads((CASE_DIR / f"{case.id}.json").read_text())["expect"]
    assert run_case(case, tmp_path, recorded_plan) == expected


def test_every_case_file_is_listed():
    listed = {c.id for c in CASES}
    on_disk = {p.stem for p in CASE_DIR.glob("*.json")}
    assert on_disk == listed
