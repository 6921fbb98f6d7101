"""The TUI's diagnosis panel and evidence marks, on recorded labs and paths (no root)."""

from __future__ import annotations

import asyncio

from tui.app import make_app
from tui.sample import bridge_ping, isolation_drop, sample_lab
from tui.widgets.diagnosis import DiagnosisPanel, diagnosis_text
from tui.widgets.timeline import entries_for


def _run(app, check):
    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            check(app, pilot)
    asyncio.run(go())


def _panel_text(app) -> str:
    return app.query_one("#diagnosis-text").render().plain


def test_panel_shows_the_cause_and_the_first_fix_on_its_first_line():
    lab = sample_lab("user-bridges")

    def check(app, pilot):
        lines = _panel_text(app).splitlines()
        assert lines[0] == "why: network-isolation  fix: docker network connect back c1  (+1 below)"
        assert any(line.startswith("c1 is on network front; c3 is on network back.")
                   for line in lines)
        assert " or: docker network connect front c3" in lines
        assert "     lab: add containers[name=c1].networks back" in lines
    _run(make_app(lab, paths=[isolation_drop(lab)], trace=False), check)


def test_panel_follows_the_selection_and_says_when_there_is_no_lab():
    bridge, ub = sample_lab("bridge"), sample_lab("user-bridges")

    def check(app, pilot):
        text = _panel_text(app)
        assert text.startswith("why: ok\n") and "let it through" in text
        assert app.query_one(DiagnosisPanel).region.height <= 4      # leaves room for the hops
    _run(make_app(bridge, paths=[bridge_ping(bridge)], trace=False), check)
    recorded = isolation_drop(ub)
    assert "needs the lab" in diagnosis_text(recorded, has_lab=False).plain


def test_evidence_hops_are_marked_in_the_timeline():
    from nettrace.diagnosis import diagnose
    lab = sample_lab("user-bridges")
    path = isolation_drop(lab)
    path.diagnosis = diagnose(path, lab)
    marked = [e.id for e in entries_for(path) if "◆ evidence: network-isolation" in e.text.plain]
    assert marked == [f"request:{i}" for i in path.diagnosis.evidence]
