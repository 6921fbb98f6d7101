"""Every traced packet, newest last, with a filter box."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from nettrace.trace.model import Path
from tui.format import endpoints, verdict_text

COLUMNS = ("#", "time", "source", "destination", "proto", "verdict", "hops")


def search_text(path: Path) -> str:
    """What a filter term is matched against: names, addresses, verdict, places, rules."""
    parts = [path.src, path.dst, path.proto, path.direction, path.verdict.line()]
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


class PacketTable(DataTable):
    """Rows keyed by the packet's index in the app's list of paths."""

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.t0: int | None = None
        self._search: dict[int, str] = {}

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def row_for(self, index: int, path: Path) -> list:
        ts = path.hops[0].ts_ns if path.hops else None
        if self.t0 is None and ts is not None:
            self.t0 = ts
        when = f"{(ts - self.t0) / 1e9:.3f}s" if ts is not None and self.t0 is not None else "-"
        src, dst = endpoints(path)
        hops = len(path.hops) + (len(path.reply.hops) if path.reply else 0)
        return [Text(str(index + 1), style="dim"), when, src, dst, path.proto,
                verdict_text(path.verdict.kind), Text(str(hops), justify="right")]

    def visible(self, paths: list[Path], terms: list[str]) -> list[int]:
        keep = []
        for i, p in enumerate(paths):
            if terms:
                text = self._search.get(i)
                if text is None:
                    text = self._search[i] = search_text(p)
                if not matches(terms, text):
                    continue
            keep.append(i)
        return keep

    def fill(self, paths: list[Path], terms: list[str]) -> None:
        """Show the paths matching the filter terms, keeping the cursor on the same packet."""
        current = self.current_index()
        self.clear()
        shown = self.visible(paths, terms)
        for i in shown:
            self.add_row(*self.row_for(i, paths[i]), key=str(i))
        if current is not None and current in shown:
            self.move_cursor(row=shown.index(current), scroll=True)

    def add_path(self, index: int, path: Path, terms: list[str]) -> bool:
        """Append one packet if it passes the filter; True when it is shown."""
        if terms and not matches(terms, self._search.setdefault(index, search_text(path))):
            return False
        self.add_row(*self.row_for(index, path), key=str(index))
        return True

    def current_index(self) -> int | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key.value is not None else None

    def select_index(self, index: int) -> None:
        try:
            row = self.get_row_index(str(index))
        except Exception:
            return
        self.move_cursor(row=row, scroll=True)
