"""One line above the footer: lab, probes live, events lost, packets shown, and the
tracer's state last (with a spinner while probes compile), so a long reason only
truncates itself."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusBar(Static):
    def __init__(self, **kw) -> None:
        super().__init__("", **kw)
        self.frame = 0
        self.last: Text | None = None

    def show(self, *, lab: str | None, tracer: str, tracer_style: str, busy: bool,
             probes: tuple[int, int] | None, lost: int, shown: int, total: int) -> None:
        text = Text()
        text.append(f" {lab or 'no lab'} ", "bold reverse")
        if probes is not None:
            live, total_probes = probes
            text.append(f" probes {live}/{total_probes} │", "green" if live == total_probes else "yellow")
        text.append(" ")
        text.append(f"lost {lost}", "bold red" if lost else "dim")
        text.append(" │ ")
        text.append(f"{shown}/{total} pkts" if shown != total else f"{total} pkts", "dim")
        text.append(" │ ")
        if busy:
            self.frame = (self.frame + 1) % len(SPINNER)
            text.append(SPINNER[self.frame] + " ", "bold yellow")
        text.append(tracer, tracer_style)
        if self.last is None or text.plain != self.last.plain or text.spans != self.last.spans:
            self.last = text
            self.update(text)            # only on change: no repaint every tick
