"""A drawn map of the lab: boxes for containers and hosts, buses for bridges, lines for veths.

`draw_map(lab)` lays the lab out once (pure, no Textual): each host is a box holding its
containers as columns, each container's endpoint is a vertical line down to the bus
(bridge, overlay br0 or macvlan parent) it is plugged into, and hosts and external
clients hang off the underlay bus at the bottom. Every drawn cell remembers which
interface it stands for, so `MapDrawing.render(path)` can colour the path's hops and
number them in the order the packet visited them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widget import Widget

from nettrace.views.names import hop_device
from nettrace.topology.model import Host, Lab, Role, Sandbox
from nettrace.trace.model import DROPPED, Path, Point
from tui.format import drop_hop

Key = tuple[str | None, str | None]          # (netns, ifname); ifname None = the node itself
LINE_STYLE, NAME_STYLE, DIM = "grey62", "bold", "grey50"
PATH_STYLE, DROP_STYLE, CURRENT_STYLE = "bold green", "bold red", "bold reverse"
BADGE_STYLE, DROP_BADGE = "bold black on green", "bold white on red"
#: frees of the packet (kfree_skb, consume_skb): part of the step before, no step of their own
FREES = (Point.DROP, Point.CONSUME)
VETH_SPACING = 13


class Canvas:
    """Cells addressed by (x, y); each may belong to one element (Key)."""

    def __init__(self) -> None:
        self.chars: dict[tuple[int, int], str] = {}
        self.styles: dict[tuple[int, int], str] = {}
        self.owner: dict[tuple[int, int], Key] = {}
        self.anchors: dict[Key, tuple[int, int]] = {}
        self.right_aligned: set[Key] = set()     # badges grow leftwards (bus ends)

    @property
    def width(self) -> int:
        return max((x for x, _ in self.chars), default=-1) + 1

    @property
    def height(self) -> int:
        return max((y for _, y in self.chars), default=-1) + 1

    def put(self, x: int, y: int, text: str, style: str = "", key: Key | None = None) -> None:
        for i, ch in enumerate(text):
            cell = (x + i, y)
            self.chars[cell] = ch
            self.styles[cell] = style
            if key is not None:
                self.owner[cell] = key
            else:
                self.owner.pop(cell, None)

    def anchor(self, key: Key, x: int, y: int, right: bool = False) -> None:
        if key not in self.anchors:
            self.anchors[key] = (x, y)
            if right:
                self.right_aligned.add(key)

    def box(self, x: int, y: int, w: int, h: int, title: str, key: Key | None,
            style: str = LINE_STYLE) -> None:
        self.put(x, y, "┌" + "─" * (w - 2) + "┐", style, key)
        self.put(x + 2, y, f" {title} ", NAME_STYLE, key)
        for row in range(y + 1, y + h - 1):
            self.put(x, row, "│", style, key)
            self.put(x + w - 1, row, "│", style, key)
        self.put(x, y + h - 1, "└" + "─" * (w - 2) + "┘", style, key)
        if key is not None:
            self.anchor(key, x + 1, y)

    def blit(self, other: "Canvas", dx: int, dy: int) -> None:
        for (x, y), ch in other.chars.items():
            cell = (x + dx, y + dy)
            self.chars[cell] = ch
            self.styles[cell] = other.styles[(x, y)]
            if (x, y) in other.owner:
                self.owner[cell] = other.owner[(x, y)]
        for key, (x, y) in other.anchors.items():
            self.anchor(key, x + dx, y + dy, key in other.right_aligned)


@dataclass
class Bus:
    key: Key
    label: list[tuple[str, Key]]             # text segments, each lit with its own element


@dataclass
class Block:
    canvas: Canvas
    uplink_x: int | None = None
    uplink_key: Key | None = None
    uplink_label: str = ""
    port_key: Key | None = None


@dataclass
class Step:
    """One place on the map the packet visited (consecutive hops there merged)."""

    number: int
    key: Key | None
    place: str
    hops: list[int] = field(default_factory=list)
    dropped: bool = False


@dataclass
class MapDrawing:
    canvas: Canvas
    netns_of: dict[str, str]                 # node name -> netns, for hops without netns

    def key_for(self, hop) -> Key | None:
        ns = hop.netns or self.netns_of.get(hop.sandbox or "") or self.netns_of.get(hop.host or "")
        dev = hop_device(hop)
        for key in ((ns, dev), (ns, None)):
            if key in self.canvas.anchors:
                return key
        return None

    def steps(self, path: Path | None) -> list[Step]:
        if path is None:
            return []
        dropped_at = drop_hop(path) if path.verdict.kind == DROPPED else None
        steps: list[Step] = []
        for i, hop in enumerate(path.hops):
            if steps and hop.point in FREES and i != dropped_at:
                steps[-1].hops.append(i)     # a free is no place the packet went
                continue
            key = self.key_for(hop)
            if not steps or steps[-1].key != key or steps[-1].place != hop.place:
                steps.append(Step(len(steps) + 1, key, hop.place))
            steps[-1].hops.append(i)
            steps[-1].dropped |= i == dropped_at
        return steps

    def render(self, path: Path | None = None, current_hop: int | None = None,
               focus: Key | None = None) -> Text:
        """The map with the path lit and the `focus` element (picked in the CNM tree)
        reversed; the legend (steps in words) is `legend(self.steps(path))`."""
        canvas = self.canvas
        steps = self.steps(path)
        lit: dict[Key, str] = {focus: CURRENT_STYLE} if focus in canvas.anchors else {}
        badges: dict[tuple[int, int], tuple[str, str]] = {}
        numbers: dict[Key, list[str]] = {}
        for step in steps:
            if step.key is None:
                continue
            style = DROP_STYLE if step.dropped else PATH_STYLE
            if lit.get(step.key) not in (DROP_STYLE, CURRENT_STYLE):
                lit[step.key] = style
            if current_hop in step.hops:
                lit[step.key] = CURRENT_STYLE
            numbers.setdefault(step.key, []).append(str(step.number))
        for key, nums in numbers.items():
            x, y = canvas.anchors[key]
            label = ",".join(nums)
            if key in canvas.right_aligned:
                x -= len(label) - 1
            badge = DROP_BADGE if lit[key] == DROP_STYLE else BADGE_STYLE
            for i, ch in enumerate(label):
                badges[(x + i, y)] = (ch, badge)
        width, height = canvas.width, canvas.height
        text = Text(no_wrap=True, overflow="crop")
        for y in range(height):
            if y:
                text.append("\n")
            run_style, run = None, []
            for x in range(width):
                cell = (x, y)
                if cell in badges:
                    ch, style = badges[cell]
                else:
                    ch = canvas.chars.get(cell, " ")
                    owner = canvas.owner.get(cell)
                    style = lit.get(owner) if owner in lit else canvas.styles.get(cell, "")
                if style != run_style and run:
                    text.append("".join(run), run_style or None)
                    run = []
                run_style = style
                run.append(ch)
            if run:
                text.append("".join(run).rstrip() if not run_style else "".join(run), run_style or None)
        return text


def legend(steps: list[Step], path: Path | None) -> Text:
    """1 c1:eth0 → 2 host:veth0a1b → ... ✓ delivered (the order, in words)."""
    text = Text()
    for i, step in enumerate(steps):
        if i:
            text.append(" → ", DIM)
        text.append(f"{step.number}", DROP_BADGE if step.dropped else BADGE_STYLE)
        text.append(f"\u00a0{step.place}", DROP_STYLE if step.dropped else "")   # no break inside
    if path is not None:
        from tui.format import verdict_text
        text.append("  ")
        text.append_text(verdict_text(path.verdict.kind))
    return text


# -- layout -------------------------------------------------------------------------------

def draw_map(lab: Lab) -> MapDrawing:
    blocks = [_host_block(lab, h) for h in lab.hosts.values()]
    blocks += [_client_block(lab, c) for c in lab.clients.values()]
    canvas = Canvas()
    top = max((b.canvas.height for b in blocks), default=0)
    x = 0
    uplinks: list[tuple[int, Block]] = []
    for block in blocks:
        canvas.blit(block.canvas, x, top - block.canvas.height)
        if block.uplink_x is not None:
            uplinks.append((x + block.uplink_x, block))
        x += block.canvas.width + 2
    if lab.underlay_netns and uplinks:
        under_key: Key = (lab.underlay_netns, "lan0")
        for ux, block in uplinks:
            canvas.put(ux, top, "│", LINE_STYLE, block.uplink_key)
            canvas.put(ux + 1, top, block.uplink_label, DIM, block.uplink_key)
            canvas.anchor(block.uplink_key, ux, top)
            port = block.port_key or under_key
            canvas.put(ux, top + 1, "│", LINE_STYLE, port)
            canvas.put(ux + 1, top + 1, port[1] or "", DIM, port)
            canvas.anchor(port, ux, top + 1)
        right = max(canvas.width, uplinks[-1][0] + 4)
        canvas.put(0, top + 2, "═" * right, LINE_STYLE, under_key)
        for ux, block in uplinks:
            canvas.put(ux, top + 2, "●", LINE_STYLE, block.port_key or under_key)
        canvas.put(right, top + 2, " ", "", under_key)
        canvas.anchor(under_key, right, top + 2, right=True)
        canvas.put(right + 1, top + 2, f"lan0 underlay {lab.underlay_subnet or ''}".rstrip(),
                   NAME_STYLE, under_key)
    names = {n: node.netns for n, node in {**lab.hosts, **lab.clients, **lab.sandboxes}.items()}
    return MapDrawing(canvas, names)


def _buses(lab: Lab, host: Host, sandboxes: list[Sandbox]) -> tuple[list[Bus], dict]:
    """The buses drawn in a host: its bridges, and whatever its containers plug into."""
    itfs = {(i.netns, i.ifname): i for i in lab.interfaces}
    attach: dict[tuple[str, str], Key] = {}            # (sandbox, ifname) -> bus key
    order: list[Key] = [(i.netns, i.ifname) for i in lab.interfaces
                        if i.role == Role.BRIDGE and i.host == host.name]
    for sb in sandboxes:
        for ep in sb.endpoints:
            key = _bus_of(lab, sb, ep, itfs)
            if key is not None:
                attach[(sb.name, ep.ifname)] = key
                if key not in order:
                    order.append(key)
    order.sort(key=lambda k: (k[1] != "docker0", k[1] == "docker_gwbridge"))
    buses = []
    for key in order:
        itf = itfs.get(key)
        net = next((n for n in lab.networks if itf and n.name == itf.network), None)
        label: list[tuple[str, Key]] = [(key[1] or "?", key)]
        if itf is not None and itf.role == Role.BRIDGE:
            name = f" {net.name}" if net and net.name != key[1] else ""
            label.append((f"{name} {net.subnet or ''}".rstrip() if net else "", key))
            vx = next((i for i in lab.interfaces if i.netns == key[0] and i.role == Role.VXLAN), None)
            if vx is not None:
                vkey: Key = (vx.netns, vx.ifname)
                label.append((f" ─ {vx.ifname}" + (f" vni {net.vni}" if net and net.vni else ""), vkey))
        elif net is not None:
            label.append((f" {net.driver} parent {net.name} {net.subnet or ''}".rstrip(), key))
        buses.append(Bus(key, label))
    return buses, attach


def _bus_of(lab: Lab, sb: Sandbox, ep, itfs: dict) -> Key | None:
    if ep.host_netns:
        for i in lab.interfaces:
            if i.netns == ep.host_netns and i.role == Role.BRIDGE and i.network == ep.network:
                return (i.netns, i.ifname)
    mine = itfs.get((sb.netns, ep.ifname))
    if mine is not None and mine.peer and "/" in mine.peer and not ep.host_ifname:
        ns, dev = mine.peer.rsplit("/", 1)
        return (ns, dev)
    try:
        net = lab.network(ep.network, sb.host)
    except KeyError:
        return None
    return (net.netns, net.device) if net.device else None


def _host_block(lab: Lab, host: Host) -> Block:
    c = Canvas()
    sandboxes = [s for s in lab.sandboxes.values() if s.host == host.name]
    buses, attach = _buses(lab, host, sandboxes)
    bus_row = {bus.key: i for i, bus in enumerate(buses)}
    box_h = 2 + max([1] + [len(s.endpoints) for s in sandboxes])
    top, x = 1, 2
    lines: list[tuple[int, Key, Key, str, Key]] = []   # x, container key, veth key, label, bus
    for sb in sandboxes:
        rows = [f"{ep.ifname} {ep.ipv4}" for ep in sb.endpoints]
        if not rows:
            rows = ["host network" if sb.network_mode == "host" else "no network"]
        w = max(len(sb.name) + 6, max(len(r) for r in rows) + 4, VETH_SPACING * len(sb.endpoints) + 2)
        node: Key = (sb.netns, None)
        c.box(x, top, w, box_h, sb.name, node)
        for i, row in enumerate(rows):
            ep = sb.endpoints[i] if sb.endpoints else None
            key = (sb.netns, ep.ifname) if ep else node
            c.put(x + 2, top + 1 + i, row, "", key)
            c.anchor(key, x + 1, top + 1 + i)
        for k, ep in enumerate(sb.endpoints):
            bus = attach.get((sb.name, ep.ifname))
            if bus is None:
                continue
            lx = x + 2 + VETH_SPACING * k
            mine: Key = (sb.netns, ep.ifname)
            c.put(lx, top + box_h - 1, "┬", LINE_STYLE, mine)
            veth: Key = (ep.host_netns, ep.host_ifname) if ep.host_ifname else bus
            label = ep.host_ifname or (next((n.driver for n in lab.networks if n.name == ep.network), ""))
            lines.append((lx, mine, veth, label[:VETH_SPACING - 2], bus))
        x += w + 2
    label_y = top + box_h
    bus_y0 = label_y + 1
    right = max([lx + 4 for lx, *_ in lines] + [12])
    for i, bus in enumerate(buses):
        y = bus_y0 + i
        c.put(1, y, "═" * (right - 1), LINE_STYLE, bus.key)
        c.put(right, y, " ", "", bus.key)
        c.anchor(bus.key, right, y, right=True)
        lx = right + 1
        for text, key in bus.label:
            c.put(lx, y, text, NAME_STYLE if key == bus.key else DIM, key)
            if key != bus.key:
                c.anchor(key, lx + 1, y)          # e.g. vxlan0 after "br0 ovnet ... ─"
            lx += len(text)
    for lx, mine, veth, label, bus in lines:
        c.put(lx, label_y, "│", LINE_STYLE, veth)
        c.put(lx + 1, label_y, label, DIM, veth)
        c.anchor(veth, lx, label_y)
        end = bus_y0 + bus_row[bus]
        for y in range(label_y + 1, end):
            c.put(lx, y, "│", LINE_STYLE, veth)
        c.put(lx, end, "●", LINE_STYLE, bus)
    inner_w = max(c.width + 1, len(host.name) + 8, 20)
    inner_h = max(c.height, bus_y0 + len(buses), top + box_h + 1)
    block = Canvas()
    title = host.name if host.name == "host" else f"host {host.name}"
    block.box(0, 0, inner_w + 2, inner_h + 1, title, (host.netns, None), DIM)
    block.blit(c, 1, 0)
    result = Block(block)
    if host.uplink:
        ux = 4
        result.uplink_x, result.uplink_key = ux, (host.netns, host.uplink)
        result.uplink_label = f"{host.uplink} {host.address or ''}".rstrip()
        result.port_key = _underlay_port(lab, host)
        block.put(ux, inner_h, "┬", DIM, result.uplink_key)
    return result


def _client_block(lab: Lab, client: Host) -> Block:
    c = Canvas()
    row = f"{client.uplink or 'eth0'} {client.address or ''}".rstrip()
    key: Key = (client.netns, client.uplink or "eth0")
    title = client.name if client.name == "client" else f"client {client.name}"
    c.box(0, 0, max(len(row), len(title) + 2) + 4, 3, title, (client.netns, None))
    c.put(2, 1, row, "", key)
    c.anchor(key, 1, 1)
    c.put(4, 2, "┬", LINE_STYLE, key)
    return Block(c, 4, key, "", _underlay_port(lab, client))


def _underlay_port(lab: Lab, node: Host) -> Key | None:
    want = f"{node.netns}/{node.uplink or 'eth0'}"
    for i in lab.interfaces:
        if i.netns == lab.underlay_netns and i.peer == want:
            return (i.netns, i.ifname)
    return None


class TopologyMap(Widget):
    """The drawn map; `show(path, hop)` lights the path's hops in order.

    Drawing happens in `render()`, which Textual calls only while the map is on screen,
    so moving through packets does not redraw the map of a hidden tab.
    """

    DEFAULT_CSS = "TopologyMap { width: auto; height: auto; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.drawing: MapDrawing | None = None
        self.path: Path | None = None
        self.current_hop: int | None = None
        self.focus_key: Key | None = None
        self._picture: tuple[tuple, RenderableType] | None = None

    def set_lab(self, lab: Lab | None) -> None:
        self.drawing = draw_map(lab) if lab is not None else None
        self.path, self.current_hop = None, None
        self.refresh(layout=True)

    def show(self, path: Path | None, current_hop: int | None = None) -> None:
        if path is self.path and current_hop == self.current_hop:
            return
        self.path, self.current_hop = path, current_hop
        if self.region:                       # hidden maps are drawn when they are shown
            self.refresh(layout=True)

    def point_at(self, key: Key | None) -> None:
        """Reverse the element for `key` (netns, ifname), e.g. the CNM tree's cursor."""
        if key != self.focus_key:
            self.focus_key = key
            if self.region:
                self.refresh()

    def get_content_width(self, container, viewport) -> int:
        """The map's own width (it scrolls sideways), not the container's."""
        if self.drawing is None:
            return super().get_content_width(container, viewport)
        return max(self.drawing.canvas.width, 40)

    def render(self) -> RenderableType:
        key = (id(self.drawing), id(self.path), self.current_hop, self.focus_key)
        if self._picture is None or self._picture[0] != key:
            self._picture = (key, self._draw())
        return self._picture[1]

    def _draw(self) -> RenderableType:
        if self.drawing is None:
            return Text("no lab open: press l to pick or bring one up", style="dim")
        picture = self.drawing.render(self.path, self.current_hop, self.focus_key)
        steps = self.drawing.steps(self.path)
        # a Group keeps Rich's rendering (no_wrap map, wrapping legend) for both cases
        return Group(picture, legend(steps, self.path)) if steps else Group(picture)
