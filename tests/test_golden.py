"""Every golden case in captures/: offline from its recorded bundle (no root, fast), and
live: replay the capture into a fresh lab, compare each hop and the hand-written `expect:`.

Each live case brings its embedded lab up under its own name (`gold-<lab>`), so a lab someone
left up under the embedded name is neither reused nor disturbed, and is taken down after:
the case must leave no namespace behind. A difference prints expected and actual side by
side, as `nettrace check` does.
"""

from __future__ import annotations

import glob
import os

import pytest

from conftest import ROOT, needs_root, our_namespaces, run_cli
from nettrace.capture.golden import GOLDEN_SUFFIX, load_golden, side_by_side

CASES = sorted(glob.glob(os.path.join(ROOT, "captures", "*" + GOLDEN_SUFFIX)))
REQUIRED = {"bridge-ping", "dns-user-bridge", "published-port-tcp", "isolation-drop",
            "icc-drop", "internal-egress-drop", "masquerade-egress", "macvlan-ping",
            "overlay-ping", "arp"}


def test_corpus_has_every_required_case():
    names = {os.path.basename(c)[:-len(GOLDEN_SUFFIX)] for c in CASES}
    assert REQUIRED <= names, f"missing golden cases: {sorted(REQUIRED - names)}"
    for file in CASES:
        case = load_golden(file)
        assert os.path.exists(case.capture), f"{file}: capture {case.capture} is missing"
        assert case.frames, f"{file}: no frames"
        assert all(f.request or f.error for f in case.frames), file


@pytest.mark.parametrize("golden", CASES, ids=lambda p: os.path.basename(p)[:-len(GOLDEN_SUFFIX)])
def test_golden_case_offline(golden):
    """No root, no lab: the recorded bundle, assembled now, meets the signatures and the
    hand-written expectations (its speed is measured by bench/bench_check.py)."""
    from nettrace.capture.check import run_case
    case = load_golden(golden)
    assert case.bundle and os.path.exists(case.bundle), f"{golden}: no bundle"
    assert case.expect, f"{golden}: no hand-written expect: block"
    result = run_case(case)
    report = [line for d in result.differences for line in side_by_side(d, 70)]
    assert result.passed, f"{case.name}: {result.problems}\n" + "\n".join(report)
    assert not result.live


def test_offline_check_of_the_corpus_fails_on_a_wrong_expectation(tmp_path):
    """The expectations are checked: a chain, a NAT rewrite and a reply each edited to
    something false make `nettrace check` (offline, no root) exit 1 naming each."""
    import shutil
    import yaml
    src = os.path.join(ROOT, "captures", "published-port-tcp" + GOLDEN_SUFFIX)
    doc = yaml.safe_load(open(src))
    doc["capture"] = os.path.join(ROOT, "captures", doc["capture"])
    shutil.copy(os.path.join(ROOT, "captures", doc["bundle"]), tmp_path / doc["bundle"])
    doc["expect"][0].update(chain="DOCKER-USER", changes=[":8080 -> 10.9.9.9:80 (DNAT)"])
    doc["expect"][0]["reply"] = None
    broken = tmp_path / ("published-port-tcp" + GOLDEN_SUFFIX)
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_cli("check", str(broken), "--width", "60")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "3 expectations unmet" in out and "expected DOCKER-USER" in out
    assert "10.9.9.9" in out and "a reply was seen, none expected" in out


def test_whole_corpus_checks_offline_as_one_command():
    proc = run_cli("check", *CASES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(CASES)} cases: {len(CASES)} ok, 0 failed" in proc.stdout
    assert proc.stdout.count("(offline, ") == len(CASES)


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("golden", CASES, ids=lambda p: os.path.basename(p)[:-len(GOLDEN_SUFFIX)])
def test_golden_case(golden):
    from nettrace.capture.check import run_case
    case = load_golden(golden)
    name = f"gold-{case.lab}"
    before = set(our_namespaces())
    result = run_case(case, lab_name=name, live=True)
    assert not result.reused_lab
    assert [ns for ns in our_namespaces() if ns not in before] == [], "lab left behind"
    report = [line for d in result.differences for line in side_by_side(d, 70)]
    assert result.passed, f"{case.name}: {result.problems} paths differ from {golden}\n" + \
        "\n".join(report)
    assert len(result.actual) == len(case.frames)


@needs_root
@pytest.mark.slow
def test_check_reports_a_difference_side_by_side_and_exits_1(tmp_path):
    """A golden file edited to expect another verdict fails `nettrace check` with exit 1."""
    import yaml
    src = os.path.join(ROOT, "captures", "icc-drop" + GOLDEN_SUFFIX)
    doc = yaml.safe_load(open(src))
    assert doc["frames"][0]["verdict"].startswith("dropped at")
    doc["frames"][0]["verdict"] = "delivered at c2:eth0"
    doc["capture"] = os.path.join(ROOT, "captures", doc["capture"])
    doc["bundle"] = str(tmp_path / "icc-drop.bundle.json.gz")     # --update writes it here
    broken = tmp_path / ("icc-drop" + GOLDEN_SUFFIX)
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = run_cli("check", str(broken), "--lab-name", "gold-cli", "--live")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED  icc-drop (live): 1 of 1 frames differ" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any("expected" in ln and "| actual" in ln for ln in lines)
    diff = [ln for ln in lines if ln.lstrip().startswith("! verdict: delivered at c2:eth0")]
    assert diff and "| verdict: dropped at" in diff[0], proc.stdout
    # --update rewrites the golden file to what happens now; check then passes
    proc = run_cli("check", str(broken), "--lab-name", "gold-cli", "--update")
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(broken.read_text())["frames"][0]["verdict"].startswith("dropped at")
    assert os.path.exists(doc["bundle"])
    proc = run_cli("check", str(broken))                       # offline, from the new bundle
    assert proc.returncode == 0 and proc.stdout.startswith("ok      icc-drop"), proc.stdout
