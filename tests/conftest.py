"""Shared fixtures: real labs in real namespaces (root), brought down whatever happens.

Every test that creates kernel objects runs as root on the real kernel. At the end of the
session no namespace with nettrace's prefix may remain: a leak fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

# Names unique to this run: the suite's labs, namespaces and state files never collide with a
# user's running labs (`nettrace lab up bridge` before `make test`) nor with another test run.
RUN_TAG = os.environ.get("NETTRACE_TEST_TAG") or f"{os.getpid():x}"[-5:]
os.environ.setdefault("NETTRACE_NS_PREFIX", f"ntt{RUN_TAG}")
os.environ.setdefault("NETTRACE_STATE_DIR", f"/run/nettrace-test-{RUN_TAG}")

# Fuzzing (tests/test_fuzz_*.py): a bounded number of examples per property so the suite
# stays fast; NETTRACE_FUZZ_EXAMPLES=N runs longer. No deadline: the machine is shared.
# Under CI the examples are derived from each test, not drawn at random: a CI run checks
# the same inputs every time (new crashes are for the longer runs to find, and are kept as
# regression tests), so a green main cannot turn red by luck.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "nettrace", max_examples=int(os.environ.get("NETTRACE_FUZZ_EXAMPLES", "100")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True, derandomize=os.environ.get("CI") == "true")
settings.load_profile("nettrace")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETTRACE = os.path.join(os.path.dirname(sys.executable), "nettrace")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, netlink, eBPF)")

# -- a suite that cannot pass by skipping ------------------------------------------------------
# A skip for something the machine lacks (a tool, a Docker engine that will not start, the
# tracer failing to import) says "missing: ...". Under CI=true such a skip is a failure: CI
# installs everything (make setup), so a missing piece there is a broken setup, not a pass.
MISSING = "missing: "
IN_CI = os.environ.get("CI") == "true"


def missing(what: str) -> str:
    """The reason of a skip for something this machine lacks (a failure under CI=true)."""
    return MISSING + what


def needs_tool(name: str):
    """Mark: skip (fail under CI) when the command `name` is not installed."""
    return pytest.mark.skipif(shutil.which(name) is None,
                              reason=missing(f"{name} is not installed (make setup)"))


def require_tool(name: str) -> str:
    """Inside a test: the tool's path, or skip (fail under CI) naming it. Use it instead of
    `if shutil.which(...)` blocks, which pass silently when the tool is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(missing(f"{name} is not installed (make setup)"))
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (IN_CI and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = report.longrepr[2].removeprefix("Skipped: ")
    if reason.startswith(MISSING):
        report.outcome = "failed"
        report.longrepr = (f"CI=true: this test would have been skipped ({reason}); under CI "
                           f"a missing tool, engine or tracer is a failure, not a pass")


def our_namespaces(prefix: str | None = None) -> list[str]:
    from nettrace.topology import netns
    from nettrace.topology.model import NS_PREFIX
    p = (prefix or NS_PREFIX) + "."
    return [ns for ns in netns.list_all() if ns.startswith(p)]


def run_cli(*args: str, env: dict | None = None, check: bool = False,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `nettrace` command (as a user would)."""
    proc = subprocess.run([NETTRACE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"nettrace {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def no_leftovers():
    """Fail the session if any nettrace namespace survives it."""
    before = set(our_namespaces()) if os.geteuid() == 0 else set()
    yield
    if os.geteuid() == 0:
        leaked = sorted(set(our_namespaces()) - before)
        assert not leaked, f"namespaces left behind by the test session: {leaked}"
    from nettrace.topology.model import STATE_DIR
    if STATE_DIR.startswith("/run/nettrace-test-"):
        shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def labs():
    """`labs(name)` brings an embedded lab up once per session (shared, read-only use)."""
    from nettrace.topology import builder, spec
    if os.geteuid() != 0:
        pytest.skip("needs root")
    up: dict[str, object] = {}

    def get(name: str, *, as_name: str | None = None, engine: str | None = None):
        """`engine`: "20.10" brings the lab up under Docker 20.10's profile (as_name needed)."""
        key = as_name or name
        if key not in up:
            lab_spec = spec.load(name, name=as_name)
            if engine is not None:
                import dataclasses
                lab_spec.engine = dataclasses.replace(lab_spec.engine, version=engine)
            up[key] = builder.up(lab_spec)
        return up[key]

    yield get
    for name in up:
        builder.down(name, quiet=True)


@pytest.fixture
def make_lab():
    """`make_lab(spec_or_name)` brings up a lab for one test and always takes it down."""
    from nettrace.topology import builder, spec
    if os.geteuid() != 0:
        pytest.skip("needs root")
    made: list[str] = []

    def make(ref: str | None = None, *, text: str | None = None, name: str | None = None,
             engine: str | None = None):
        s = spec.parse(text, default_name=name or "t") if text else spec.load(ref, name=name)
        if engine is not None:               # "20.10": Docker 20.10's profile
            import dataclasses
            s.engine = dataclasses.replace(s.engine, version=engine)
        lab = builder.up(s)
        made.append(lab.name)
        return lab

    yield make
    for name in made:
        builder.down(name, quiet=True)


def run_cli_unprivileged(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `nettrace` as uid 65534 (nobody) in a user namespace: no capability in the
    machine's namespaces, as an ordinary user has (the venv stays readable)."""
    proc = subprocess.run(["unshare", "--user", "--map-user=65534", "--map-group=65534",
                           NETTRACE, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))
    return proc
