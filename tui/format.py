"""Words and colours for paths and hops, shared by every pane (one place, one style)."""

from __future__ import annotations

from rich.text import Text

from nettrace.trace.model import DELIVERED, DROPPED, LOST, Hop, HookVerdict, Path
from nettrace.views.paths import verdict_line

VERDICT_STYLE = {DELIVERED: "bold green", DROPPED: "bold red", LOST: "bold yellow"}
VERDICT_MARK = {DELIVERED: "✓", DROPPED: "✗", LOST: "?"}


def verdict_text(kind: str) -> Text:
    return Text(f"{VERDICT_MARK.get(kind, '·')} {kind}", style=VERDICT_STYLE.get(kind, "bold"))


def port_of(path: Path) -> int | None:
    """Destination port of the first hop that has one (ICMP has none worth showing)."""
    if path.proto in ("udp", "tcp"):
        for hop in path.hops:
            if hop.packet and hop.packet.dport:
                return hop.packet.dport
    return None


def endpoints(path: Path) -> tuple[str, str]:
    """(source, destination) as the user named them, with the port when there is one."""
    port = port_of(path)
    has_port = path.dst.rpartition(":")[2].isdigit()
    return path.src, f"{path.dst}:{port}" if port and not has_port else path.dst


def drop_hop(path: Path) -> int | None:
    """Index of the hop where the packet was dropped, if it was."""
    if path.verdict.kind != DROPPED:
        return None
    if path.verdict.hop_index is not None:
        return path.verdict.hop_index
    for i, hop in reversed(list(enumerate(path.hops))):
        if hop.verdict is HookVerdict.DROP or hop.drop_reason:
            return i
    return len(path.hops) - 1 if path.hops else None


def kernel_point(hop: Hop) -> str:
    """tp:netif_receive_skb, nf:FORWARD (filter), tc:ingress ..."""
    text = hop.point
    if hop.hook and hop.hook not in text:
        text += f" {hop.hook}"
    return text


def summary(path: Path) -> Text:
    """One line: c1 → c2 icmp · ✓ delivered at c2:eth0 (to socket) · 7 hops."""
    src, dst = endpoints(path)
    line = Text.assemble((f"{path.direction}: ", "dim"), (f"{src} → {dst} {path.proto}", "bold"),
                         " · ")
    line.append_text(verdict_text(path.verdict.kind))
    rest = verdict_line(path)[len(path.verdict.kind):]
    if rest:
        line.append(rest, style=VERDICT_STYLE.get(path.verdict.kind, ""))
    line.append(f" · {len(path.hops)} hops", style="dim")
    return line
