"""The private Docker engine: starts in its own namespace, stops without a trace, fails clearly."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import run_cli

pytest_plugins = ["conftest_docker"]
pytestmark = pytest.mark.docker


def fake_daemon(tmp_path, name: str, script: str) -> dict:
    """A PATH in which `name` is a script (to make dockerd fail to start, visibly)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / name
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_engine_runs_in_its_own_namespace_and_stops_clean(docker_engine):
    from nettrace.docker.engine import mounts_under
    from nettrace.topology import netns
    eng = docker_engine
    root_forward = open("/proc/sys/net/ipv4/ip_forward").read()
    assert netns.exists(eng.netns) and eng.netns.endswith(eng.name)
    assert eng.url.startswith("unix:///tmp/") and len(eng.socket) < 100
    # dockerd works in the engine's namespace: forwarding and its chains are there
    assert netns.sysctl_read(eng.netns, "net.ipv4.ip_forward") == "1"
    assert ":DOCKER-USER" in netns.run(eng.netns, ["iptables-save"]).stdout
    assert open("/proc/sys/net/ipv4/ip_forward").read() == root_forward
    eng.swarm_init()
    eng.add_parent_link("mvparent")
    eng.run("c1", [("bridge", None)])
    assert mounts_under(eng.root), "a running container mounts its rootfs and netns"
    report = eng.stop()
    assert report.containers == 1 and report.processes >= 2 and report.links >= 1
    assert not report.problems
    assert not netns.exists(eng.netns) and not os.path.exists(eng.root)
    assert not mounts_under(eng.root)
    for pid in (eng.dockerd_pid, eng.containerd_pid):
        assert not os.path.exists(f"/proc/{pid}") or \
            eng.root.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()
    eng.stop()                                   # stopping twice is harmless


def test_failed_start_reports_logs_and_leaves_nothing(tmp_path, monkeypatch):
    from nettrace.docker import engine
    from nettrace.errors import EnvironmentProblem
    from nettrace.topology import netns
    if os.geteuid() != 0:
        pytest.skip("needs root")
    monkeypatch.setenv("PATH", fake_daemon(tmp_path, "dockerd",
                                           "echo 'cannot start: boom' >&2; exit 3")["PATH"])
    ours = engine.NS_PREFIX + "-"
    before = {f for f in os.listdir("/tmp") if f.startswith(ours)}
    with pytest.raises(EnvironmentProblem) as err:
        engine.start("tfail", timeout=10)
    assert "dockerd exited with 3" in str(err.value) and "cannot start: boom" in str(err.value)
    assert not netns.exists(engine.NS_PREFIX + ".docker-tfail")
    assert {f for f in os.listdir("/tmp") if f.startswith(ours)} <= before   # temp dir removed
    assert not os.path.exists(os.path.join(engine.ENGINE_DIR, "docker-tfail.json"))


def test_missing_docker_names_the_packages(monkeypatch, tmp_path):
    from nettrace.docker import engine
    from nettrace.errors import EnvironmentProblem
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="apt-get install -y docker.io containerd runc"):
        engine.check_installed()


def test_bad_tag_is_refused():
    from nettrace.docker import engine
    from nettrace.errors import NettraceError
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(NettraceError, match="engine tag 'Bad.Tag'"):
        engine.start("Bad.Tag")


def test_engine_cli_start_ls_stop():
    from nettrace.topology import netns
    from nettrace.topology.model import NS_PREFIX
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = f"cli{os.getpid()}"
    proc = run_cli("docker", "engine", "start", tag)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "export DOCKER_HOST=unix://" in proc.stdout
        assert netns.exists(f"{NS_PREFIX}.docker-{tag}")
        assert f"docker-{tag}" in run_cli("docker", "engine", "ls").stdout
        again = run_cli("docker", "engine", "start", tag)
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        proc = run_cli("docker", "engine", "stop", tag)
    assert proc.returncode == 0 and "stopped" in proc.stdout
    assert not netns.exists(f"{NS_PREFIX}.docker-{tag}")
    missing = run_cli("docker", "engine", "stop", tag)
    assert missing.returncode == 2 and f"no Docker engine named docker-{tag}" in missing.stderr
