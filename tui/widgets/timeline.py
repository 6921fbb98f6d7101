"""The selected packet's path as a vertical timeline, request then reply.

One option per hop (Δt, place, role, kernel point; then netfilter hook/rule/verdict,
header changes and the drop reason on continuation lines), so the cursor walks hops and
Enter opens the packet detail at that hop.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from nettrace.trace.model import Hop, Path
from tui.format import VERDICT_STYLE, drop_hop, kernel_point, rule_text, summary

SPINE = "│"


def delta(ns: int) -> str:
    """+26.3µs, +1.204ms, +2.50s: time since the path's first hop."""
    if ns < 1_000_000:
        return f"+{ns / 1000:.1f}µs"
    if ns < 1_000_000_000:
        return f"+{ns / 1e6:.3f}ms"
    return f"+{ns / 1e9:.2f}s"


def hop_text(hop: Hop, t0: int, dropped: bool, path_reason: str | None = None) -> Text:
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
        text.append(line, "bold red" if hop.verdict == "drop" else "")
    rule = rule_text(hop)
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
    return text


class PathTimeline(OptionList):
    """Hops of the selected path; ids are 'request:N' / 'reply:N'."""

    BINDINGS = [Binding("enter", "select", "Packet detail", show=True)]

    class HopChosen(Message):
        """The user opened a hop (Enter): show its packet detail."""

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
        self.clear_options()
        if path is None:
            self.add_option(Option(Text("no packet selected: press i to inject one", style="dim"),
                                   disabled=True))
            return
        options: list[Option | None] = []
        t0 = path.hops[0].ts_ns if path.hops else 0
        for leg, p in self.legs().items():
            if leg == "reply":
                options.append(None)
            options.append(Option(summary(p), id=f"{leg}:head", disabled=True))
            dropped = drop_hop(p)
            for i, hop in enumerate(p.hops):
                options.append(Option(hop_text(hop, t0, i == dropped, p.verdict.reason),
                                      id=f"{leg}:{i}"))
            if not p.hops:
                options.append(Option(Text("no hop was seen (probes missing, or the packet "
                                           "never left)", style="yellow"), disabled=True))
            if p.probes_missing:
                options.append(Option(Text(f"probes missing: {', '.join(p.probes_missing)}",
                                           style="yellow"), disabled=True))
        self.add_options(options)
        first_hop = next((i for i, o in enumerate(options) if o and not o.disabled), None)
        if first_hop is not None:
            self.highlighted = first_hop

    def _hop_at(self, option_id: str | None) -> tuple[Path, int] | None:
        if not option_id or option_id.endswith(":head"):
            return None
        leg, index = option_id.split(":")
        path = self.legs().get(leg)
        return (path, int(index)) if path is not None else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        found = self._hop_at(event.option.id)
        if found:
            self.post_message(self.HopChosen(*found))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        found = self._hop_at(event.option.id)
        if found:
            self.post_message(self.HopHighlighted(*found))

    def current_hop(self) -> tuple[Path, int] | None:
        if self.highlighted is None:
            return None
        return self._hop_at(self.get_option_at_index(self.highlighted).id)
