"""The suite itself (issue 11, list 7): it cannot pass by skipping under CI, and it runs
beside a user's own labs without touching them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import RUN_TAG, MISSING, NETTRACE, needs_root

TESTS = os.path.dirname(os.path.abspath(__file__))

PROBE = '''
import pytest
from conftest import needs_tool, require_tool

@needs_tool("nettrace-no-such-tool")
def test_marked_tool():
    pass

def test_tool_inside():
    require_tool("nettrace-no-such-tool")

def test_not_applicable():
    pytest.skip("not applicable here")      # an ordinary skip stays a skip
'''


def _probe(tmp_path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join(
        [TESTS, os.environ.get("PYTHONPATH", "")]),
        # a state dir of its own: the probe's session teardown must not touch this run's
        "NETTRACE_STATE_DIR": str(tmp_path / "state"), "NETTRACE_NS_PREFIX": f"nttprobe{RUN_TAG}"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-q", "-rs",
                           "-p", "no:cacheprovider", str(tmp_path / "test_probe.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_under_ci_a_missing_tool_fails_instead_of_skipping(tmp_path):
    proc = _probe(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the mark fails in setup (an error), the call in the test (a failure); the plain skip stays
    assert "1 failed, 1 skipped, 1 error" in proc.stdout, proc.stdout
    assert proc.stdout.count("CI=true: this test would have been skipped (missing: "
                             "nettrace-no-such-tool") == 2, proc.stdout
    local = _probe(tmp_path, "")
    assert local.returncode == 0 and "3 skipped" in local.stdout, local.stdout
    assert "missing: nettrace-no-such-tool is not installed" in local.stdout


@needs_root
def test_docker_engine_that_will_not_start_is_a_missing_skip(monkeypatch):
    """conftest_docker used to skip quietly; now its reason counts as missing (CI fails)."""
    import conftest_docker
    from nettrace.docker import engine
    from nettrace.errors import NettraceError

    def broken(tag):
        raise NettraceError("dockerd exited with status 1")
    monkeypatch.setattr(engine, "start", broken)
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest_docker.start_engine_or_skip("t-guard")
    assert str(skipped.value).startswith(MISSING + "a Docker engine: it did not start: dockerd")


def test_tracer_import_error_is_a_missing_skip():
    import test_tui_live
    assert test_tui_live.needs_tracer.kwargs["reason"].startswith(MISSING)


def _default_env() -> dict:
    """The environment of a user who set nothing: prefix `nt`, state in /run/nettrace."""
    return {k: v for k, v in os.environ.items()
            if k not in ("NETTRACE_NS_PREFIX", "NETTRACE_STATE_DIR", "NETTRACE_TEST_TAG")}


@needs_root
def test_suite_runs_beside_a_users_bridge_lab_and_leaves_it_up():
    """`nettrace lab up bridge` (default prefix and state dir), then part of the suite that
    brings up its own `bridge`: it passes, and the user's lab is still up afterwards."""
    env = _default_env()
    ls = subprocess.run([NETTRACE, "lab", "ls", "--json"], capture_output=True, text=True,
                        env=env, timeout=60)
    already = any(r["name"] == "bridge" for r in json.loads(ls.stdout)["labs"])
    if not already:               # a user's own bridge lab is left exactly as it is
        up = subprocess.run([NETTRACE, "lab", "up", "bridge"], capture_output=True, text=True,
                            env=env, timeout=120)
        assert up.returncode == 0, up.stderr
    try:
        from nettrace.topology import netns
        users = sorted(ns for ns in netns.list_all() if ns.startswith("nt.bridge."))
        assert users, "the user's lab has no namespace"
        part = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             os.path.join(TESTS, "test_drivers.py") + "::test_bridge_same_network_reachable",
             os.path.join(TESTS, "test_lab_lifecycle.py") + "::test_two_labs_at_once_do_not_interfere"],
            capture_output=True, text=True, env=env, timeout=600, cwd=os.path.dirname(TESTS))
        assert part.returncode == 0, part.stdout[-3000:] + part.stderr[-2000:]
        assert "2 passed" in part.stdout, part.stdout
        still = subprocess.run([NETTRACE, "lab", "ls", "--json"], capture_output=True, text=True,
                               env=env, timeout=60)
        row = next(r for r in json.loads(still.stdout)["labs"] if r["name"] == "bridge")
        assert row["state"] == "up", row
        assert sorted(ns for ns in netns.list_all() if ns.startswith("nt.bridge.")) == users
        ping = subprocess.run([NETTRACE, "lab", "exec", "bridge", "c1", "--", "ping", "-c1",
                               "-W2", "172.17.0.3"], capture_output=True, text=True, env=env,
                              timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        if not already:
            down = subprocess.run([NETTRACE, "lab", "down", "bridge"], capture_output=True,
                                  text=True, env=env, timeout=120)
            assert down.returncode == 0, down.stderr
