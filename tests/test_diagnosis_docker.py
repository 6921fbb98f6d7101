"""The diagnosis on a real Docker engine (`nettrace path --docker`): the session engine of
conftest_docker (default bridge, unet, internal, noicc, web publishing 8080->80 served by
httpd), traced with the real tracer; the cause is asserted from what the engine's own rules
and namespaces did. The one rule a test adds (DOCKER-USER) is removed again."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

pytest_plugins = ["conftest_docker"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def cause(url: str, *args: str) -> dict:
    proc = run_cli("path", "--docker", url, *args, "--json", "--timeout", "3")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[0])["diagnosis"]


@pytest.mark.parametrize("src, dst, extra, expected", [
    ("u1", "10.96.0.10", [], "network-isolation"),      # unet -> noicc: two user networks
    ("n1", "n2", [], "icc-disabled"),
    ("i1", "10.99.0.10", [], "internal-network"),        # internal: no way out
    ("c1", "web", ["--proto", "tcp", "--dport", "81"], "no-listener"),
    ("c1", "web", ["--proto", "tcp", "--dport", "80"], "ok"),
])
def test_causes_on_a_live_engine(docker_scenario, src, dst, extra, expected):
    d = cause(docker_scenario.engine.url, src, dst, *extra)
    assert d["cause"] == expected, d["summary"]
    assert d["summary"] and isinstance(d["evidence"], list)


def test_expect_cause_through_docker(docker_scenario):
    url = docker_scenario.engine.url
    assert run_cli("path", "--docker", url, "n1", "n2", "--expect-cause",
                   "icc-disabled").returncode == 0
    out = run_cli("path", "--docker", url, "n1", "n2")
    assert "why: [icc-disabled]" in out.stdout and "noicc" in out.stdout


def test_docker_user_rule_on_a_live_engine(docker_scenario):
    from nettrace.topology import netns
    eng = docker_scenario.engine
    rule = ["DOCKER-USER", "-p", "icmp", "-j", "DROP"]
    netns.run(eng.netns, ["iptables", "-I", *rule])
    try:
        d = cause(eng.url, "c1", "c2")
    finally:
        netns.run(eng.netns, ["iptables", "-D", *rule])
    assert d["cause"] == "docker-user-rule", d["summary"]
    assert "DOCKER-USER" in d["summary"]
    assert cause(eng.url, "c1", "c2")["cause"] == "ok"


def test_unpublished_host_port_on_a_live_engine(docker_scenario):
    from nettrace.docker.discover import discover
    lab = discover(docker_scenario.engine.url)
    gateway = lab.network("bridge").gateway            # the host, as its containers see it
    d = cause(docker_scenario.engine.url, "c1", f"{gateway}:9090")
    assert d["cause"] == "port-not-published", d["summary"]
    assert "tcp/9090" in d["summary"]
