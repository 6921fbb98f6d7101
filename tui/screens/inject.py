"""`i`: the inject form. Dismisses with the `InjectRequest` the tracer will run."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select

from nettrace.errors import NettraceError
from nettrace.topology.model import Lab
from tui.session import InjectRequest

PROTOCOLS = ("icmp", "udp", "tcp", "arp")


def parse_form(src: str | None, dst: str, proto: str, port: str, count: str) -> InjectRequest:
    """Check the form; errors name the field, as the CLI's do."""
    if not src:
        raise NettraceError("source: pick the container (or client) to send from")
    dst = dst.strip()
    if not dst:
        raise NettraceError("destination: a container name, an IP, or host:port")
    if proto not in PROTOCOLS:
        raise NettraceError(f"protocol: one of {', '.join(PROTOCOLS)}")
    dport = None
    if port.strip():
        if not port.strip().isdigit() or not 1 <= int(port) <= 65535:
            raise NettraceError(f"port: a number from 1 to 65535, not '{port.strip()}'")
        if proto not in ("udp", "tcp"):
            raise NettraceError(f"port: only udp and tcp have ports, not {proto}")
        dport = int(port)
    if ":" in dst and proto in ("udp", "tcp"):
        host, _, p = dst.rpartition(":")
        if not p.isdigit() or not 1 <= int(p) <= 65535:
            raise NettraceError(f"destination: '{dst}' has a bad port")
        if dport is not None and dport != int(p):
            raise NettraceError(f"port: {dport} contradicts the destination's port {p}")
    if not count.strip().isdigit() or not 1 <= int(count) <= 1000:
        raise NettraceError(f"count: a number from 1 to 1000, not '{count.strip()}'")
    return InjectRequest(src, dst, proto, dport, int(count))


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
            request = parse_form(None if src is Select.BLANK else str(src),
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
