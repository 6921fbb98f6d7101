"""Every traced packet, newest last: a virtual list that renders only the rows on screen.

Filtering or appending never rebuilds widgets or re-measures cells, so a keystroke costs
the same with 10 packets or 100,000 (a DataTable re-measured every cell: 0.8 s for 1,000
rows). Columns: #, time since the first packet, source, destination, protocol, verdict
(colour-coded) and hop count (request + reply).
"""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from nettrace.trace.model import Path
from nettrace.views.paths import verdict_line
from tui.format import VERDICT_MARK, VERDICT_STYLE, endpoints

FIXED = (("#", 5), ("time", 9), ("proto", 6), ("verdict", 12), ("hops", 5))


def search_text(path: Path) -> str:
    """What a filter term is matched against: names, addresses, verdict, places, rules."""
    parts = [path.src, path.dst, path.proto, path.direction, verdict_line(path)]
    for p in (path, path.reply):
        if p is None:
            continue
        for hop in p.hops:
            parts.append(hop.place)
            if hop.packet:
                parts += [hop.packet.src or "", hop.packet.dst or ""]
            if hop.rule:
                parts += [hop.rule.chain, hop.rule.rule or ""]
            if hop.drop_reason:
                parts.append(hop.drop_reason)
    return " ".join(parts).lower()


def matches(terms: list[str], text: str) -> bool:
    """Every term must occur; a term starting with ! must not."""
    for term in terms:
        if term.startswith("!") and len(term) > 1:
            if term[1:] in text:
                return False
        elif term not in text:
            return False
    return True


@lru_cache(maxsize=16)
def _style(name: str) -> Style:
    return Style.parse(name)


def _cell(text: str, width: int) -> str:
    return (text[: width - 2] + "… ") if len(text) > width - 1 else text.ljust(width)


class PacketList(ScrollView, can_focus=True):
    """Rows are indexes into the app's list of paths; `shown` is the filtered order."""

    COMPONENT_CLASSES = {"packet-list--header", "packet-list--cursor", "packet-list--odd"}
    DEFAULT_CSS = """
    PacketList > .packet-list--header { text-style: bold; background: $panel; }
    PacketList > .packet-list--cursor { background: $primary 40%; }
    PacketList:focus > .packet-list--cursor { background: $primary; text-style: bold; }
    PacketList > .packet-list--odd { background: $surface-lighten-1; }
    """
    BINDINGS = [Binding("up", "move(-1)", show=False), Binding("down", "move(1)", show=False),
                Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False),
                Binding("home", "move(-1e9)", show=False), Binding("end", "move(1e9)", show=False),
                Binding("enter", "choose", "Path", show=False)]

    class Highlighted(Message):
        """The cursor moved onto packet `index`."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class Chosen(Message):
        """Enter on packet `index`."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.paths: list[Path] = []
        self.shown: list[int] = []
        self.cursor = 0
        self.t0: int | None = None
        self._search: dict[int, str] = {}
        self._rows: dict[int, list[tuple[str, str]]] = {}

    # -- data ---------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self.shown)

    def visible(self, paths: list[Path], terms: list[str]) -> list[int]:
        if not terms:
            return list(range(len(paths)))
        keep = []
        for i, p in enumerate(paths):
            text = self._search.get(i)
            if text is None:
                text = self._search[i] = search_text(p)
            if matches(terms, text):
                keep.append(i)
        return keep

    def fill(self, paths: list[Path], terms: list[str]) -> None:
        """Show the paths matching the filter terms, keeping the cursor on the same packet."""
        current = self.current_index()
        if paths is not self.paths:
            self._search.clear()
            self._rows.clear()
            self.t0 = None
        self.paths = paths
        self.shown = self.visible(paths, terms)
        self.cursor = self.shown.index(current) if current in self.shown else 0
        self._resized()
        if current is not None and self.current_index() != current:
            self._announce()

    def add_path(self, index: int, path: Path, terms: list[str]) -> bool:
        """Append one packet (it is `paths[index]`) if it passes the filter; True if shown."""
        if terms and not matches(terms, self._search.setdefault(index, search_text(path))):
            return False
        self.shown.append(index)
        self._resized()
        return True

    def clear(self) -> None:
        """Forget every row (the app emptied its list of paths, which this shares)."""
        self.shown, self.cursor, self.t0 = [], 0, None
        self._search.clear()
        self._rows.clear()
        self._resized()

    def current_index(self) -> int | None:
        return self.shown[self.cursor] if 0 <= self.cursor < len(self.shown) else None

    def select_index(self, index: int) -> None:
        if index in self.shown:
            self._set_cursor(self.shown.index(index))

    # -- cursor -------------------------------------------------------------------------
    def _set_cursor(self, row: int) -> None:
        row = max(0, min(row, len(self.shown) - 1))
        if row == self.cursor and self.shown:
            self._scroll_to_cursor()
            return
        self.cursor = row
        self._scroll_to_cursor()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        index = self.current_index()
        if index is not None:
            self.post_message(self.Highlighted(index))

    def _scroll_to_cursor(self) -> None:
        body = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False)

    def action_move(self, delta: float) -> None:
        if self.shown:
            self._set_cursor(self.cursor + int(max(-1e9, min(1e9, delta))))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height - 2))

    def action_choose(self) -> None:
        index = self.current_index()
        if index is not None:
            self.post_message(self.Chosen(index))

    def on_click(self, event: events.Click) -> None:
        row = self.scroll_offset.y + event.y - 1
        if event.y >= 1 and 0 <= row < len(self.shown):
            self._set_cursor(row)

    # -- rendering ----------------------------------------------------------------------
    def _resized(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.shown) + 1)
        self.refresh()

    def on_resize(self) -> None:
        self._resized()

    def _widths(self) -> tuple[int, int]:
        """(source, destination) widths: what the fixed columns leave, split 2:3."""
        spare = max(16, self.size.width - sum(w for _, w in FIXED))
        return spare * 2 // 5, spare - spare * 2 // 5

    def _cells(self, index: int) -> list[tuple[str, str]]:
        row = self._rows.get(index)
        if row is None:
            path = self.paths[index]
            ts = path.hops[0].ts_ns if path.hops else None
            if self.t0 is None and ts is not None:
                self.t0 = ts
            when = f"{(ts - self.t0) / 1e9:.3f}s" if ts is not None and self.t0 is not None else "-"
            src, dst = endpoints(path)
            hops = len(path.hops) + (len(path.reply.hops) if path.reply else 0)
            kind = path.verdict.kind
            row = self._rows[index] = [
                (str(index + 1), "dim"), (when, ""), (path.proto, ""),
                (f"{VERDICT_MARK.get(kind, '·')} {kind}", VERDICT_STYLE.get(kind, "")),
                (str(hops).rjust(4), ""), (src, ""), (dst, "")]
        return row

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        src_w, dst_w = self._widths()
        widths = [w for _, w in FIXED[:2]] + [src_w, dst_w] + [w for _, w in FIXED[2:]]
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("packet-list--header")
            names = ["#", "time", "source", "destination", "proto", "verdict", "hops"]
            text = "".join(_cell(n, w) for n, w in zip(names, widths))
            return Strip([Segment(text.ljust(width)[:width], style)])
        row = self.scroll_offset.y + y - 1
        if row >= len(self.shown):
            return Strip([Segment(" " * width, base)])
        cells = self._cells(self.shown[row])
        num, when, proto, verdict, hops, src, dst = cells
        ordered = [num, when, src, dst, proto, verdict, hops]
        if row == self.cursor:
            line = base + self.get_component_rich_style("packet-list--cursor")
        elif row % 2:
            line = base + self.get_component_rich_style("packet-list--odd")
        else:
            line = base
        segments, used = [], 0
        for (text, style), w in zip(ordered, widths):
            segments.append(Segment(_cell(text, w), line + _style(style) if style else line))
            used += w
        if used < width:
            segments.append(Segment(" " * (width - used), line))
        return Strip(segments).crop(0, width)
