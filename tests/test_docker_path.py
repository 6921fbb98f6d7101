"""`nettrace path --docker`: tracing through a real engine gives the same path as the lab.

Each embedded lab is mirrored into a fresh private engine; the same flow is traced in both
with the real tracer (eBPF + nft trace), and the paths must have the same shape (the
sequence of (role, probe point) of request and reply) and the same verdict. Names differ
(veth<id>, br-<id>, host names) and are not compared. Docker's firewall must be exactly as
it was after tracing: rules are read, never changed.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli
from nettrace.views.paths import verdict_line
from nettrace.inject.request import InjectRequest

pytest_plugins = ["conftest_docker"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

# lab, src, dst, proto, dport, expected verdict
FLOWS = [
    ("bridge", "c1", "c2", "icmp", None, "delivered"),
    ("user-bridges", "c1", "c2", "icmp", None, "delivered"),
    ("user-bridges", "c1", "10.20.0.2", "icmp", None, "dropped"),      # c3, other bridge
    ("icc-off", "c1", "c2", "icmp", None, "dropped"),
    ("internal", "c1", "c2", "icmp", None, "delivered"),
    ("published-port", "c1", "web", "tcp", 80, "delivered"),
    ("published-port", "c1", "172.17.0.1:8080", "tcp", None, "delivered"),   # hairpin DNAT
    ("macvlan", "m1", "m2", "icmp", None, "delivered"),
]


# A lab's macvlan networks hang off the host's uplink (role uplink); Docker's here off a
# veth end discovered as the network's parent (role macvlan-parent): the same hop.
SAME_ROLE = {"uplink": "macvlan-parent"}


def shape(path) -> list[tuple[str | None, str]]:
    return [(SAME_ROLE.get(h.role, h.role), h.point) for h in path.hops]


def trace(lab, src, dst, proto, dport):
    """Trace twice and keep the second: the first may wait on ARP (neighbour resolution)."""
    from nettrace.trace import Tracer
    with Tracer(lab) as tr:
        tr.path(InjectRequest(src, dst, proto=proto, dport=dport))
        return tr.path(InjectRequest(src, dst, proto=proto, dport=dport))[0]


def firewall_state(ns: str) -> tuple[str, str]:
    """iptables rules and the whole nft ruleset (trace rules included), counters removed."""
    import re
    from nettrace.topology import netns
    from nettrace.topology.firewall import dump
    nft = netns.run(ns, ["nft", "list", "ruleset"]).stdout
    return dump(ns), re.sub(r"counter packets \d+ bytes \d+", "counter", nft)


@pytest.mark.parametrize("lab_name,src,dst,proto,dport,expected", FLOWS,
                         ids=[f"{f[0]}:{f[1]}->{f[2]}/{f[3]}" for f in FLOWS])
def test_same_path_shape_as_the_lab(lab_name, src, dst, proto, dport, expected, engine_labs,
                                    docker_engine):
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror
    from nettrace.views.paths import outcome
    lab = engine_labs(lab_name, as_name=f"dp-{lab_name}")
    mirror(docker_engine, lab)
    docker = discover(docker_engine.url)
    before = firewall_state(docker_engine.netns)
    in_lab = trace(lab, src, dst, proto, dport)
    in_docker = trace(docker, src, dst, proto, dport)
    assert outcome(in_lab) == expected, verdict_line(in_lab)
    assert outcome(in_docker) == expected, verdict_line(in_docker)
    assert in_docker.verdict.kind == in_lab.verdict.kind
    assert shape(in_docker) == shape(in_lab)
    assert bool(in_docker.reply) == bool(in_lab.reply)
    if in_lab.reply:
        assert shape(in_docker.reply) == shape(in_lab.reply)
    if in_lab.verdict.rule:                      # dropped by a rule: the same rule
        assert in_docker.verdict.rule is not None
        assert (in_docker.verdict.rule.table, in_docker.verdict.rule.chain) == \
            (in_lab.verdict.rule.table, in_lab.verdict.rule.chain)
    # hops are named in Docker's terms: containers, and the engine's devices
    places = {h.place for h in in_docker.hops}
    assert f"{src}:eth0" in places
    assert firewall_state(docker_engine.netns) == before


def test_cli_path_through_docker(docker_scenario):
    """`nettrace path --docker SRC DST` as a user types it (engine from DOCKER_HOST), with
    --docker-host URL, and the older `--docker URL SRC DST`, on the session engine."""
    url = docker_scenario.engine.url
    before = firewall_state(docker_scenario.engine.netns)
    proc = run_cli("path", "--docker", "u1", "u2", "--json", env={"DOCKER_HOST": url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    paths = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    hops = paths[0]["hops"]
    assert paths[0]["verdict"]["kind"] == "delivered"
    assert [h["role"] for h in hops if h["point"] == "tp:net_dev_queue"][:1] == ["container"]
    assert any(h["role"] == "bridge" for h in hops)
    # ICC off: dropped, the CLI says so with exit code 1 (expected delivered)
    proc = run_cli("path", "n1", "n2", "--docker", "--docker-host", url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "dropped" in proc.stdout
    # overlay through br0 of the network's sandbox
    proc = run_cli("path", "--docker", url, "o1", "o2", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hops = json.loads(proc.stdout.splitlines()[0])["hops"]
    assert {"ov-ovnet:br0", "o2:eth0"} <= {f"{h['sandbox']}:{h['device']}" for h in hops}
    assert firewall_state(docker_scenario.engine.netns) == before


@pytest.fixture
def two_engines():
    """Two private engines on one underlay switch, like the overlay lab's host1 and host2."""
    from conftest_docker import start_engine_or_skip, stop_engine_checked
    from nettrace.docker import engine
    from nettrace.topology import netns
    first = start_engine_or_skip(f"a{os.getpid()}")
    try:
        second = start_engine_or_skip(f"b{os.getpid()}")
    except BaseException:
        stop_engine_checked(first)
        raise
    underlay = f"{engine.NS_PREFIX}.docker-ul-a{os.getpid()}"
    try:
        engine.connect([first, second])
        assert netns.exists(underlay)
        yield first, second
    finally:
        stop_engine_checked(first)
        stop_engine_checked(second)
    assert not netns.exists(underlay), "the last engine to stop removes the underlay"


def without_wire(path) -> list[tuple[str | None, str]]:
    """The shape without the underlay switch (a lab has one in a namespace; real hosts have a
    physical wire nettrace cannot see) and without xmit-completion hops, which fold into the
    previous hop when no underlay hop comes between."""
    return [s for s in shape(path) if s[0] != "underlay" and s[1] != "tp:net_dev_xmit"]


def test_overlay_across_two_engines_same_path_as_the_lab(engine_labs, two_engines):
    """c1 on host1 -> c2 on host2 through real VXLAN between two Docker engines."""
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror_hosts
    first, second = two_engines
    lab = engine_labs("overlay", as_name="dp-overlay")
    mirror_hosts({"host1": first, "host2": second}, lab)
    docker = discover(f"{first.url},{second.url}")
    assert set(docker.hosts) == {first.name, second.name}
    assert docker.hosts[first.name].address == "192.168.50.11"
    assert docker.hosts[first.name].uplink == "eth0"
    in_lab = trace(lab, "c1", "c2", "icmp", None)
    in_docker = trace(docker, "c1", "c2", "icmp", None)
    assert in_lab.verdict.kind == in_docker.verdict.kind == "delivered"
    assert without_wire(in_docker) == without_wire(in_lab)
    assert without_wire(in_docker.reply) == without_wire(in_lab.reply)
    roles = [h.role for h in in_docker.hops]
    assert roles.count("vxlan") >= 2 and "uplink" in roles      # encapsulated, over the wire
    hosts = {h.host for h in in_docker.hops if h.role == "uplink"}
    assert hosts == {first.name, second.name}
    proc = run_cli("path", "--docker", f"{first.url},{second.url}", "c2", "c1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["verdict"]["kind"] == "delivered"
