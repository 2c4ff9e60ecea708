"""Templates beside the recipes (recipes/templates/) with {{name}} placeholders.

Deliberately tiny: a missing value is an error, never an empty string in a config file.
"""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).with_name("templates")


def template(name: str, **values: object) -> str:
    text = (TEMPLATES / name).read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    left = re.findall(r"\{\{(\w+)\}\}", text)
    if left:
        raise ValueError(f"template {name}: no value for {', '.join(sorted(set(left)))}")
    return text
