"""The selected packet's path as a vertical timeline, request then reply.

One entry per hop (Δt, place, role, kernel point; then netfilter hook/rule/verdict,
header changes and the drop reason on continuation lines), so the cursor walks hops and
Enter opens the packet detail at that hop. Entries are wrapped once per path and width
and drawn line by line (Textual's Line API): an OptionList rebuilt on every cursor move
in the packet list cost ~30 ms of CPU per keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from nettrace.trace.model import Hop, HookVerdict, Path
from nettrace.views.paths import rule_text
from tui.format import VERDICT_STYLE, drop_hop, kernel_point, summary

SPINE = "│"


def delta(ns: int) -> str:
    """+26.3µs, +1.204ms, +2.50s: time since the path's first hop."""
    if ns < 1_000_000:
        return f"+{ns / 1000:.1f}µs"
    if ns < 1_000_000_000:
        return f"+{ns / 1e6:.3f}ms"
    return f"+{ns / 1e9:.2f}s"


def hop_text(hop: Hop, t0: int, dropped: bool, path_reason: str | None = None,
             lab=None, evidence: str | None = None) -> Text:
    pad = " " * 11
    mark, style = ("✗", VERDICT_STYLE["dropped"]) if dropped else ("●", "bold cyan")
    text = Text.assemble((f"{delta(hop.ts_ns - t0):>10} ", "dim"), (mark, style), " ",
                         (f"{hop.place:<24}", "bold red" if dropped else "bold"), " ",
                         (f"{hop.role or '':<10}", "magenta"), " ", (kernel_point(hop), "cyan"))
    if hop.hook or (hop.verdict and hop.point != "drop"):
        nf = [f"nf {hop.hook}" if hop.hook else "verdict"]
        if hop.family:
            nf.append(hop.family)
        if hop.in_dev:
            nf.append(f"in {hop.in_dev}")
        if hop.out_dev:
            nf.append(f"out {hop.out_dev}")
        line = " ".join(nf)
        if hop.verdict:
            line += f" → {hop.verdict}"
        text.append(f"\n{pad}{SPINE} ", "dim")
        text.append(line, "bold red" if hop.verdict is HookVerdict.DROP else "")
    rule = rule_text(hop.rule, lab, hop.netns) if hop.rule else None
    if rule:
        text.append(f"\n{pad}{SPINE} ", "dim")
        text.append("rule ", "dim")
        text.append(rule, "bold red" if hop.rule and hop.rule.verdict == "drop" else "yellow")
    for change in hop.changes:
        text.append(f"\n{pad}{SPINE} ", "dim")
        text.append(f"Δ {change}", "blue")
    if dropped or hop.drop_reason:
        where = f" at {hop.location}" if hop.location else ""
        text.append(f"\n{pad}{SPINE} ", "dim")
        reason = hop.drop_reason or (path_reason if dropped else None) or "reason not reported"
        text.append(f"✗ dropped: {reason}{where}", "bold white on red")
    if evidence:
        text.append(f"\n{pad}{SPINE} ", "dim")
        text.append(f"◆ evidence: {evidence}", "bold magenta")
    return text


@dataclass
class Entry:
    """One block of the timeline: a hop ('request:3', 'reply:0') or a heading (id None)."""

    id: str | None
    text: Text


def entries_for(path: Path | None, lab=None) -> list[Entry]:
    if path is None:
        return [Entry(None, Text("no packet selected: press i to inject one", style="dim"))]
    entries: list[Entry] = []
    t0 = path.hops[0].ts_ns if path.hops else 0
    legs = [("request", path)] + ([("reply", path.reply)] if path.reply is not None else [])
    # the diagnosis counts the reply's hops after the request's
    evidence = set(path.diagnosis.evidence) if path.diagnosis is not None else set()
    cause = path.diagnosis.cause.value if path.diagnosis is not None else None
    for leg, p in legs:
        base = 0 if leg == "request" else len(path.hops)
        if leg == "reply":
            entries.append(Entry(None, Text("─" * 40, style="dim")))
        entries.append(Entry(None, summary(p)))
        dropped = drop_hop(p)
        for i, hop in enumerate(p.hops):
            text = hop_text(hop, t0, i == dropped, p.verdict.reason, lab,
                            cause if base + i in evidence else None)
            entries.append(Entry(f"{leg}:{i}", text))
        if not p.hops:
            entries.append(Entry(None, Text("no hop was seen (probes missing, or the packet "
                                            "never left)", style="yellow")))
        if p.probes_missing:
            entries.append(Entry(None, Text(f"probes missing: {', '.join(p.probes_missing)}",
                                            style="yellow")))
    return entries


class PathTimeline(ScrollView, can_focus=True):
    """Hops of the selected path; the cursor is on a hop entry."""

    COMPONENT_CLASSES = {"path-timeline--cursor"}
    DEFAULT_CSS = """
    PathTimeline > .path-timeline--cursor { background: $primary 30%; }
    PathTimeline:focus > .path-timeline--cursor { background: $primary 60%; }
    """
    BINDINGS = [Binding("enter", "choose", "Packet detail", show=True),
                Binding("up", "move(-1)", show=False), Binding("down", "move(1)", show=False),
                Binding("home", "move(-1e9)", show=False), Binding("end", "move(1e9)", show=False),
                Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False)]

    class HopChosen(Message):
        """The user opened a hop (Enter or click): show its packet detail."""

        def __init__(self, path: Path, index: int) -> None:
            super().__init__()
            self.path, self.index = path, index

    class HopHighlighted(Message):
        def __init__(self, path: Path, index: int) -> None:
            super().__init__()
            self.path, self.index = path, index

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.path: Path | None = None
        self.shown = False
        self.entries: list[Entry] = []
        self.cursor: int | None = None               # index into entries (a hop entry)
        self._lines: list[tuple[int, Strip]] = []    # (entry index, wrapped line)
        self._width = -1

    def legs(self) -> dict[str, Path]:
        if self.path is None:
            return {}
        legs = {"request": self.path}
        if self.path.reply is not None:
            legs["reply"] = self.path.reply
        return legs

    def show(self, path: Path | None) -> None:
        if path is self.path and self.shown:
            return
        self.path, self.shown = path, True
        self.entries = entries_for(path, getattr(self.app, "lab", None))
        self.cursor = next((i for i, e in enumerate(self.entries) if e.id), None)
        self._width = -1
        self.scroll_to(y=0, animate=False)
        self._layout()
        self.refresh()
        self._announce()

    # -- layout -----------------------------------------------------------------------
    def _layout(self) -> None:
        """Wrap every entry to the current width (once per path and width)."""
        width = self.scrollable_content_region.width or self.size.width
        if width <= 0 or width == self._width:
            return
        self._width = width
        console = self.app.console
        options = console.options.update(width=width, no_wrap=False, overflow="fold")
        self._lines = []
        for i, entry in enumerate(self.entries):
            for segments in console.render_lines(entry.text, options, pad=True):
                self._lines.append((i, Strip(segments, width)))
        self.virtual_size = Size(width, len(self._lines))

    def on_resize(self) -> None:
        self._layout()                        # re-wraps only when the width changed

    def render_line(self, y: int) -> Strip:
        self._layout()
        row = self.scroll_offset.y + y
        width = self.size.width
        if row >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        entry, strip = self._lines[row]
        style = self.rich_style
        if entry == self.cursor:
            style = style + self.get_component_rich_style("path-timeline--cursor")
        return strip.apply_style(style).crop_extend(0, width, style)

    # -- cursor -----------------------------------------------------------------------
    def _entry_rows(self, entry: int) -> tuple[int, int]:
        rows = [r for r, (e, _) in enumerate(self._lines) if e == entry]
        return (rows[0], rows[-1]) if rows else (0, 0)

    def _set_cursor(self, entry: int) -> None:
        if entry == self.cursor:
            return
        self.cursor = entry
        first, last = self._entry_rows(entry)
        top, height = self.scroll_offset.y, max(1, self.size.height)
        if first < top:
            self.scroll_to(y=first, animate=False)
        elif last >= top + height:
            self.scroll_to(y=min(first, last - height + 1), animate=False)
        self.refresh()
        self._announce()

    def _hops(self) -> list[int]:
        return [i for i, e in enumerate(self.entries) if e.id]

    def action_move(self, delta: float) -> None:
        hops = self._hops()
        if not hops:
            return
        at = hops.index(self.cursor) if self.cursor in hops else 0
        self._set_cursor(hops[max(0, min(len(hops) - 1, at + int(max(-1e9, min(1e9, delta)))))])

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.size.height // 3))

    def action_choose(self) -> None:
        hop = self.current_hop()
        if hop is not None:
            self.post_message(self.HopChosen(*hop))

    def on_click(self, event: events.Click) -> None:
        row = self.scroll_offset.y + event.y
        if 0 <= row < len(self._lines):
            entry = self._lines[row][0]
            if self.entries[entry].id:
                self._set_cursor(entry)
                self.action_choose()

    def _announce(self) -> None:
        hop = self.current_hop()
        if hop is not None:
            self.post_message(self.HopHighlighted(*hop))

    def _hop_at(self, entry_id: str | None) -> tuple[Path, int] | None:
        if not entry_id:
            return None
        leg, index = entry_id.split(":")
        path = self.legs().get(leg)
        return (path, int(index)) if path is not None else None

    def current_hop(self) -> tuple[Path, int] | None:
        if self.cursor is None:
            return None
        return self._hop_at(self.entries[self.cursor].id)

    def select_id(self, entry_id: str) -> None:
        """Put the cursor on entry 'request:N' / 'reply:N'."""
        for i, e in enumerate(self.entries):
            if e.id == entry_id:
                self._set_cursor(i)
