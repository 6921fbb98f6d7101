"""`p`: which probes are live on this machine, why the others are not, and events lost."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label


class ProbesScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,p", "app.pop_screen", "Close")]

    def __init__(self, probes: list, events_lost: int, reason: str | None) -> None:
        super().__init__()
        self.probes, self.events_lost, self.reason = probes, events_lost, reason

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="probes"):
            if self.reason:
                yield Label(Text(f"No tracing: {self.reason}", style="bold red"))
            lost = Text(f"events lost: {self.events_lost}",
                        style="bold red" if self.events_lost else "green")
            yield Label(lost)
            table = DataTable(id="probe-table", cursor_type="row")
            table.add_columns("probe", "live", "why not")
            for p in self.probes:
                live = bool(getattr(p, "live", False))
                table.add_row(getattr(p, "name", str(p)),
                              Text("✓ live", style="green") if live else Text("✗ off", style="red"),
                              getattr(p, "reason", "") or "")
            if not self.probes:
                table.add_row("-", "", "no tracer attached" if not self.reason else self.reason)
            yield table
