"""Why the selected packet ended as it did, and what to do: the diagnosis beside its path.

The rows are the CLI's (`nettrace.views.paths.diagnosis_parts`): the cause code and the
explanation, then each fix's docker commands and lab edits. The panel scrolls when the
terminal is short; the evidence hops are marked in the timeline below it.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from nettrace.trace.model import Path
from nettrace.views.paths import diagnosis_parts

CAUSE_STYLE = {"ok": "bold green", "unknown": "bold yellow"}


def diagnosis_text(path: Path | None, has_lab: bool = True) -> Text:
    """The cause and the first thing to run on the first line (the panel may be only a few
    lines high), then the explanation, then every fix in full (the CLI's rows)."""
    if path is None:
        return Text("why: no packet selected", style="dim")
    d = path.diagnosis
    if d is None:
        return Text("why: no diagnosis (it needs the lab the path was traced in)"
                    if not has_lab else "why: no diagnosis", style="dim")
    cause = d.cause.value
    text = Text.assemble(("why: ", "bold"), (cause, CAUSE_STYLE.get(cause, "bold red")))
    first = d.fixes[0].docker if d.fixes else []
    if first:
        text.append("  fix: ", "bold")
        text.append(first[0], "cyan")
        more = len(first) - 1 + sum(len(f.docker) for f in d.fixes[1:])
        if more:
            text.append(f"  (+{more} below)", "dim")
    text.append(f"\n{d.summary}")
    for head, body in diagnosis_parts(d)[1:]:
        text.append(f"\n{head + ':' if head else '':>4} ", "bold" if head else "")
        text.append(body, "dim" if body.startswith("lab: ") else "cyan")
    return text


class DiagnosisPanel(VerticalScroll, can_focus=False):
    """The selected path's diagnosis (why / fix)."""

    def compose(self):
        yield Static(diagnosis_text(None), id="diagnosis-text")

    def show(self, path: Path | None, has_lab: bool = True) -> None:
        self.query_one("#diagnosis-text", Static).update(diagnosis_text(path, has_lab))
        self.scroll_home(animate=False)
