"""The diagnosis on recorded traces (the captures/ corpus: real kernel events assembled
offline) with hand-written expectations, and its robustness on damaged copies of them:
whatever is missing, it returns a cause, evidence that points at real hops, and lab edits
whose paths parse. Pure: no root."""

from __future__ import annotations

import copy
import glob
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nettrace.diagnosis import Cause, diagnose, parse_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLES = sorted(glob.glob(os.path.join(ROOT, "captures", "*.bundle.json.gz")))

# hand-written: what each recorded flow is, in Docker's terms
EXPECTED = {
    "icc-drop": "icc-disabled",
    "isolation-drop": "network-isolation",
    "internal-egress-drop": "internal-network",
    "published-port-tcp": "no-listener",        # web publishes 8080->80 and listens on nothing
    "bridge-ping": "ok",
    "overlay-ping": "ok",
    "macvlan-ping": "ok",
    "masquerade-egress": "ok",
}


def _load(name: str):
    from nettrace.trace import bundle
    saved = bundle.load(os.path.join(ROOT, "captures", f"{name}.bundle.json.gz"))
    return saved.the_lab(), saved.paths()


@pytest.mark.parametrize("name, cause", sorted(EXPECTED.items()))
def test_recorded_paths_get_their_cause(name, cause):
    lab, paths = _load(name)
    assert lab is not None and paths
    for path in paths:
        d = diagnose(path, lab)
        assert d.cause.value == cause, d.summary


def _all_paths():
    from nettrace.trace import bundle
    out = []
    for f in BUNDLES:
        saved = bundle.load(f)
        lab = saved.the_lab()
        if lab is not None:
            out += [(lab, p) for p in saved.paths()]
    return out


ALL = _all_paths()


def _check(d, path):
    assert isinstance(d.cause, Cause) and d.summary.strip()
    total = len(path.hops) + (len(path.reply.hops) if path.reply else 0)
    assert all(0 <= i < total for i in d.evidence), (d.evidence, total)
    for fix in d.fixes:
        assert fix.docker or fix.lab
        for edit in fix.lab:
            parse_path(edit.path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_recordings_still_get_an_honest_diagnosis(data):
    lab, original = data.draw(st.sampled_from(ALL))
    path = copy.deepcopy(original)
    cut = data.draw(st.integers(0, len(path.hops)))
    path.hops = path.hops[:cut]
    if data.draw(st.booleans()):
        path.reply = None
    if data.draw(st.booleans()):
        for hop in path.hops:
            hop.rule = None
        path.verdict.rule = None
    if path.reply is not None:
        path.reply.hops = path.reply.hops[:data.draw(st.integers(0, len(path.reply.hops)))]
    if data.draw(st.booleans()):            # a verdict that does not follow from the hops
        from nettrace.trace.model import VerdictKind
        path.verdict.kind = data.draw(st.sampled_from(list(VerdictKind)))
        path.verdict.hop_index = data.draw(st.none() | st.integers(0, max(0, len(path.hops) - 1)))
    for part in (path, path.reply):
        if part is not None and part.verdict.hop_index is not None and \
                part.verdict.hop_index >= len(part.hops):
            part.verdict.hop_index = len(part.hops) - 1 if part.hops else None
    _check(diagnose(path, lab), path)
