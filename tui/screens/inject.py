"""`i`: the inject form. Dismisses with the `InjectRequest` the tracer will run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select

from nettrace.errors import NettraceError
from nettrace.inject.request import InjectRequest, RequestError
from nettrace.topology.model import Lab
from nettrace.trace.endpoints import resolve_request

PROTOCOLS = ("icmp", "udp", "tcp", "arp")
#: the form's label of each InjectRequest field (errors start with it)
LABELS = {"src": "source", "dst": "destination", "proto": "protocol", "dport": "port",
          "count": "count"}


def _number(label: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise NettraceError(f"{label}: a number, not '{text}'") from None


def parse_form(lab: Lab, src: str | None, dst: str, proto: str, port: str,
               count: str) -> InjectRequest:
    """The form's text as an InjectRequest, checked by the one check of every request
    (`resolve_request`); an error starts with the label of the field it names."""
    count_n = _number("count", count)
    request = InjectRequest(src or "", dst.strip(), proto=proto or None,
                            dport=_number("port", port), count=1 if count_n is None else count_n)
    try:
        resolve_request(lab, request)
    except RequestError as exc:
        raise NettraceError(f"{LABELS.get(exc.field, exc.field)}: {exc}") from None
    return request


class InjectScreen(ModalScreen[InjectRequest | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"),
                Binding("ctrl+s", "send", "Send")]

    def __init__(self, lab: Lab) -> None:
        super().__init__()
        self.lab = lab

    def compose(self) -> ComposeResult:
        sources = [(f"{sb.name} {sb.ip() or sb.network_mode}", sb.name)
                   for sb in self.lab.sandboxes.values()]
        sources += [(f"{c.name} {c.address or ''} (client)", c.name) for c in self.lab.clients.values()]
        targets = [*self.lab.sandboxes, *self.lab.clients]
        targets += [ep.ipv4 for sb in self.lab.sandboxes.values() for ep in sb.endpoints]
        others = [s for s in self.lab.sandboxes if s != (sources[0][1] if sources else None)]
        with Vertical(classes="dialog", id="inject"):
            yield Label(f"Inject into lab [b]{self.lab.name}[/b]", classes="title")
            with Horizontal(classes="row"):
                yield Label("source", classes="field")
                yield Select(sources, id="src", allow_blank=not sources,
                             value=sources[0][1] if sources else Select.BLANK)
            with Horizontal(classes="row"):
                yield Label("destination", classes="field")
                yield Input(value=others[0] if others else "", id="dst",
                            placeholder="c2, 172.17.0.3 or 192.168.50.11:8080",
                            suggester=SuggestFromList(targets, case_sensitive=False))
            with Horizontal(classes="row"):
                yield Label("protocol", classes="field")
                yield Select([(p, p) for p in PROTOCOLS], id="proto", allow_blank=False,
                             value="icmp")
            with Horizontal(classes="row"):
                yield Label("port", classes="field")
                yield Input(id="port", placeholder="udp/tcp destination port", type="integer")
            with Horizontal(classes="row"):
                yield Label("count", classes="field")
                yield Input(value="1", id="count", type="integer")
            yield Label("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Send (ctrl+s)", id="send", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#dst", Input).focus()

    def action_send(self) -> None:
        src = self.query_one("#src", Select).value
        try:
            request = parse_form(self.lab, None if src is Select.BLANK else str(src),
                                 self.query_one("#dst", Input).value,
                                 str(self.query_one("#proto", Select).value),
                                 self.query_one("#port", Input).value,
                                 self.query_one("#count", Input).value)
        except NettraceError as exc:
            self.query_one("#error", Label).update(f"[b red]{exc}[/]")
            return
        self.dismiss(request)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_send()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self.action_send()
        else:
            self.dismiss(None)
