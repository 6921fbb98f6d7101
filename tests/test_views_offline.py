"""The views layer on recorded bundles (no root): Mermaid rendering and `nettrace diff`."""

from __future__ import annotations

import copy
import os
import re

from conftest import ROOT, run_cli
from nettrace.trace import bundle
from nettrace.trace.events import Point as Probe
from nettrace.views.diff import diverge
from nettrace.views.mermaid import mermaid

CAPTURES = os.path.join(ROOT, "captures")


def _load(case: str):
    saved = bundle.load(os.path.join(CAPTURES, f"{case}.bundle.json.gz"))
    return saved, saved.the_lab(), saved.paths()


def _check_mermaid_syntax(text: str) -> None:
    """What GitHub's renderer needs of a flowchart: a header, balanced subgraphs, quoted
    labels without raw angle brackets, and every arrow between declared or shaped nodes."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(ln.strip().startswith("subgraph ") for ln in lines) == \
        sum(ln.strip() == "end" for ln in lines)
    declared = set(re.findall(r"^\s+(n_\w+)[\[({]", text, re.M))
    for a, b in re.findall(r"(n_\w+)(?:\(\(.*?\)\))? -(?:->|\.->)(?:\|.*?\|)? (n_\w+)", text):
        assert a in declared and b in declared, (a, b)
    for label in re.findall(r'"([^"]*)"', text):
        assert "<" not in label and ">" not in label, label


def test_mermaid_draws_a_published_port_path_over_its_topology():
    _, lab, paths = _load("published-port-tcp")
    text = mermaid(paths[0], lab)
    _check_mermaid_syntax(text)
    for owner in ("host", "web", "client"):
        assert f'subgraph n_sg_{owner}["{owner}"]' in text
    assert "(DNAT)" in text and "(un-DNAT)" in text and "-.->" in text
    # Docker 20.10 with the userland proxy (the recorded bundle's profile): `-A DOCKER -i
    # docker0 -j RETURN` first, then the DNAT for other interfaces (docker-drivers.md, the
    # real engine's iptables-save)
    assert "nat DOCKER rule 2: -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT" in text
    assert "class n_end_q ok" in text and "class n_end_r ok" in text
    assert "veth(web)" in text and not re.search(r"veth[0-9a-f]{7}", text)


def test_mermaid_marks_a_drop_and_names_its_rule():
    _, lab, paths = _load("isolation-drop")
    text = mermaid(paths[0], lab)
    _check_mermaid_syntax(text)
    assert "class n_end_q drop" in text and "request dropped at host:" in text
    assert "DOCKER-ISOLATION-STAGE-2 rule 1" in text and "FORWARD DROP" in text
    shown = run_cli("show", os.path.join(CAPTURES, "isolation-drop.bundle.json.gz"),
                    "--format", "mermaid", check=True).stdout
    assert shown.startswith("```mermaid\nflowchart LR") and shown.rstrip().endswith("```")


def test_diff_finds_the_first_diverging_hop():
    saved, lab, paths = _load("bridge-ping")
    assert diverge(paths, saved.paths(), lab, lab) == []
    # the same recording with the FORWARD hook's last probe gone: that hook now "stole" it
    other = copy.copy(saved)
    rec = copy.copy(saved.traces[0])
    rec.events = [ev for ev in rec.events if not (ev.point == Probe.NF_LAST and ev.hook == 2)]
    other.traces = [rec] + saved.traces[1:]
    (d,) = diverge(paths, other.paths(), lab, lab)
    forward = next(i for i, h in enumerate(paths[0].hops) if h.hook == "FORWARD")
    assert (d.index, d.leg, d.hop) == (0, "request", forward)
    assert "FORWARD accept" in d.a[0] and "FORWARD stolen" in d.b[0]
    assert d.a[-1].startswith("verdict: delivered") and d.b[-1].startswith("verdict: dropped")


def test_diff_command_exit_codes():
    a = os.path.join(CAPTURES, "bridge-ping.bundle.json.gz")
    b = os.path.join(CAPTURES, "isolation-drop.bundle.json.gz")
    same = run_cli("diff", a, a)
    assert same.returncode == 0 and "no difference" in same.stdout
    proc = run_cli("diff", a, b)
    assert proc.returncode == 1
    assert "path 1 c1 -> 172.17.0.3 (icmp): the request diverges at hop 5" in proc.stdout
    assert "host:br(back) nf:FORWARD FORWARD drop" in proc.stdout
    assert run_cli("diff", a, os.path.join(CAPTURES, "nope.json")).returncode == 2
