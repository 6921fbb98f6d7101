"""`l`: pick a running lab, or bring an embedded lab up or down.

Dismisses with ("open" | "up" | "down", lab name); the app runs the slow part in a worker.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from nettrace.topology.model import running_labs


def embedded() -> dict[str, str]:
    """Embedded lab name -> its one-line description."""
    from nettrace.errors import NettraceError
    from nettrace.topology.spec import embedded_labs, load
    out = {}
    for name in embedded_labs():
        try:
            out[name] = load(name).description
        except NettraceError as exc:
            out[name] = f"(unreadable: {exc})"
    return out


class LabsScreen(ModalScreen[tuple[str, str] | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close"),
                Binding("u", "lab('up')", "Bring up"),
                Binding("d", "lab('down')", "Take down"),
                Binding("o", "lab('open')", "Open")]

    def __init__(self, current: str | None = None, brought_up: set[str] | None = None,
                 running: list[str] | None = None) -> None:
        super().__init__()
        self.current = current
        self.brought_up = brought_up or set()
        self.running = running_labs() if running is None else running

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="labs"):
            yield Label("Labs: [b]enter[/b] open/bring up · [b]u[/b] up · [b]d[/b] down · "
                        "[b]esc[/b] close")
            options: list[Option | None] = []
            for name in self.running:
                mark = " (open)" if name == self.current else ""
                mine = " · brought up here" if name in self.brought_up else ""
                options.append(Option(Text.assemble(("● ", "green"), (name, "bold"),
                                                    (f" running{mark}{mine}", "dim")),
                                      id=f"run:{name}"))
            if options:
                options.append(None)
            for name, desc in embedded().items():
                state = ("● ", "green") if name in self.running else ("○ ", "dim")
                options.append(Option(Text.assemble(state, (name, "bold"), (f"  {desc}", "dim")),
                                      id=f"emb:{name}"))
            yield OptionList(*options, id="lab-list")

    def _chosen(self) -> tuple[str, str] | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None:
            return None
        kind, name = (ol.get_option_at_index(ol.highlighted).id or ":").split(":", 1)
        return kind, name

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        kind, name = (event.option.id or ":").split(":", 1)
        self.dismiss(("open" if name in self.running else "up", name))

    def action_lab(self, verb: str) -> None:
        chosen = self._chosen()
        if chosen is None:
            return
        _, name = chosen
        if verb == "down" and name not in self.running:
            self.notify(f"lab {name} is not up", severity="warning")
            return
        if verb == "up" and name in self.running:
            verb = "open"
        if verb == "open" and name not in self.running:
            verb = "up"
        self.dismiss((verb, name))
