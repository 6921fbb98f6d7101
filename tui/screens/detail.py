"""Packet detail at one hop: the frame dissected layer by layer (scapy) and its hex.

`[` and `]` move to the previous or next hop of the same path, so a rewrite (NAT, TTL,
MAC, encapsulation) can be followed byte by byte.
"""

from __future__ import annotations

from dataclasses import asdict

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from nettrace.trace.model import Hop, Path
from nettrace.views.paths import rule_text
from tui.format import kernel_point, summary
from tui.widgets.keybar import KeyBar

def dissect(frame: bytes) -> tuple[str, str]:
    """(layer-by-layer dissection, hex dump); frames start at L2 or L3."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import hexdump

    from nettrace.capture.pcapng import is_l3
    if is_l3(frame):
        pkt = IP(frame) if frame[0] >> 4 == 4 else IPv6(frame)
    else:
        pkt = Ether(frame)
    return pkt.show(dump=True), hexdump(pkt, dump=True)


def header_text(path: Path, index: int, lab=None) -> Text:
    hop = path.hops[index]
    text = summary(path)
    text.append(f"\nhop {index + 1}/{len(path.hops)}: ", "dim")
    text.append(hop.place, "bold")
    text.append(f" {hop.role or ''} {kernel_point(hop)}", "cyan")
    rule = rule_text(hop.rule, lab, hop.netns) if hop.rule else None
    if rule:
        text.append(f"\nrule {rule}", "yellow")
    for change in hop.changes:
        text.append(f"\nΔ {change}", "blue")
    if hop.drop_reason:
        text.append(f"\n✗ dropped: {hop.drop_reason} {hop.location or ''}", "bold white on red")
    return text


def fields_text(hop: Hop) -> str:
    """Header fields the probe recorded, for hops without frame bytes."""
    if hop.packet is None:
        return "no header fields recorded at this hop"
    rows = [f"{k:>8}: {v}" for k, v in asdict(hop.packet).items() if v not in (None, "")]
    return "\n".join(rows)


class PacketDetailScreen(Screen):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"),
                Binding("left_square_bracket", "step(-1)", "Prev hop", key_display="["),
                Binding("right_square_bracket", "step(1)", "Next hop", key_display="]")]

    def __init__(self, path: Path, index: int) -> None:
        super().__init__()
        self.path, self.index = path, index

    def compose(self) -> ComposeResult:
        yield Static(id="detail-head")
        with VerticalScroll(id="detail-body"):
            yield Static(id="dissection")
            yield Static(id="hexdump")
        yield KeyBar()

    def on_mount(self) -> None:
        self.render_hop()

    def render_hop(self) -> None:
        hop = self.path.hops[self.index]
        self.query_one("#detail-head", Static).update(header_text(
            self.path, self.index, getattr(self.app, "lab", None)))
        if hop.frame:
            shown, hexed = dissect(hop.frame)
            self.query_one("#dissection", Static).update(Text(shown))
            self.query_one("#hexdump", Static).update(Text(hexed, style="green"))
        else:
            self.query_one("#dissection", Static).update(
                Text("no frame bytes were captured at this hop; header fields:\n\n", style="dim")
                + Text(fields_text(hop)))
            self.query_one("#hexdump", Static).update("")

    def action_step(self, delta: int) -> None:
        new = self.index + delta
        if 0 <= new < len(self.path.hops):
            self.index = new
            self.render_hop()
