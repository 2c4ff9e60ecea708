"""Horizontal bars, one per option, scaled to the widest value; fits any width."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, top: float, width: int) -> str:
    """A bar ``width`` cells long at ``top``, with eighth-cell resolution."""
    if top <= 0 or value <= 0 or width <= 0:
        return ""
    eighths = round(value / top * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


class BarChart(Widget):
    DEFAULT_CSS = """
    BarChart { height: auto; min-height: 2; }
    """

    def __init__(self, *, label_width: int = 14, **kw):
        super().__init__(**kw)
        self.label_width = label_width
        self._rows: list[tuple[str, float, str, str]] = []   # label, value, shown value, style

    def set_rows(self, rows: list[tuple[str, float, str, str]]) -> None:
        self._rows = rows
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._rows))

    def render(self) -> Text:
        if not self._rows:
            return Text("")
        width = self.content_size.width or 40
        value_w = max(len(r[2]) for r in self._rows)
        bar_w = max(1, width - self.label_width - value_w - 2)
        top = max(r[1] for r in self._rows)
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (label, value, shown, style) in enumerate(self._rows):
            if i:
                out.append("\n")
            out.append(f"{label[:self.label_width]:<{self.label_width}}")
            b = bar(value, top, bar_w)
            out.append(b, style=style)
            out.append(" " * (bar_w - len(b) + 1))
            out.append(f"{shown:>{value_w}}")
        return out
