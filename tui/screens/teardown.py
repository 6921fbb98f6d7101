"""On quit: offer to take down the labs this TUI brought up."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class TeardownScreen(ModalScreen[bool | None]):
    """Dismisses with True (take down), False (leave up) or None (do not quit)."""

    BINDINGS = [Binding("y", "answer(True)", "Take down"), Binding("n", "answer(False)", "Leave up"),
                Binding("escape", "answer(None)", "Stay")]

    def __init__(self, labs: list[str]) -> None:
        super().__init__()
        self.labs = labs

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="teardown"):
            yield Label(f"You brought up: [b]{', '.join(self.labs)}[/b]\n"
                        "Take them down before quitting?")
            with Horizontal(classes="buttons"):
                yield Button("Take down (y)", id="yes", variant="error")
                yield Button("Leave up (n)", id="no")
                yield Button("Stay (esc)", id="stay")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"yes": True, "no": False}.get(event.button.id or ""))

    def action_answer(self, answer: bool | None) -> None:
        self.dismiss(answer)
