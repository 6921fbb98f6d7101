"""`nettrace lab diff LAB --docker`: each embedded lab against a real engine running its mirror.

For every single-host lab (and host1 of the overlay lab) a fresh private engine gets the
same networks and containers (nettrace.docker.mirror), then the two are compared. What is
left must be one of the known, documented gaps between the lab and Docker 20.10 (listed
below, each one a real behaviour of the engine); anything else fails. Mutation tests check
that each section really detects a difference.
"""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

pytest_plugins = ["conftest_docker"]
pytestmark = pytest.mark.docker

LABS = ["bridge", "user-bridges", "icc-off", "internal", "published-port", "macvlan", "none",
        "host", "overlay"]


def known_gap(lab: str, d) -> bool:
    """Differences between a nettrace lab and Docker 20.10 that are real and understood."""
    # same MASQUERADE rules, another order in nat POSTROUTING
    if d.section == "firewall" and d.key.endswith("(order)"):
        return "-j MASQUERADE" in (d.lab or d.docker or "")
    return False


@pytest.mark.parametrize("name", LABS)
def test_lab_matches_its_docker_mirror(name, engine_labs, docker_engine):
    from nettrace.docker.diff import diff
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror
    lab = engine_labs(name, as_name=f"dd-{name}")
    host = "host1" if name == "overlay" else None
    mirror(docker_engine, lab, host=host)
    report = diff(lab, discover(docker_engine.url), host=host)
    unexplained = [d for d in report.differences if not known_gap(name, d)]
    assert not unexplained, report.text()
    assert report.compared["interfaces"] >= 4 and report.compared["firewall"] > 10
    # the same pairs were pinged on both sides, with the same results
    assert report.reachability["lab"] == report.reachability["docker"]
    if name not in ("host", "none", "overlay"):          # overlay: host1 has one container
        assert report.reachability["lab"], "no pair was pinged"


def test_busy_engine_only_what_the_lab_declares_is_compared(engine_labs, docker_engine):
    """The engine also runs a network and containers of its own (one publishing a port, one
    on docker0 next to the lab's): they are not differences."""
    from nettrace.docker.diff import diff
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror
    lab = engine_labs("user-bridges", as_name="ntdbusy")
    mirror(docker_engine, lab)
    client = docker_engine.client()
    client.networks.create("theirs", driver="bridge")
    docker_engine.run("stranger", [("theirs", None)], publish=["9090:80/tcp"])
    docker_engine.run("neighbour", [("bridge", None)])
    docker_engine.run("lodger", [("front", None)])       # on a lab network, not declared
    docker = discover(docker_engine.url)
    assert {"stranger", "neighbour", "lodger"} <= set(docker.sandboxes)
    report = diff(lab, docker)
    unexplained = [d for d in report.differences if not known_gap("user-bridges", d)]
    assert not unexplained, report.text()
    assert report.compared["firewall"] > 10 and report.compared["engine"] == 3
    assert not any("stranger" in k or "neighbour" in k or "lodger" in k
                   for k in report.reachability["docker"])


def test_every_section_detects_a_difference(engine_labs, docker_engine):
    """Change one thing per section in the lab; the diff must name exactly those."""
    from nettrace.docker.diff import diff
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror
    from nettrace.topology import netns
    lab = engine_labs("bridge", as_name="ntddiff")
    mirror(docker_engine, lab)
    docker = discover(docker_engine.url)
    c2 = lab.sandboxes["c2"]
    with netns.iproute(c2.netns) as ipr:                         # interfaces: MTU
        ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], mtu=1400)
    host_ns = lab.hosts["host"].netns
    netns.run(host_ns, ["iptables", "-I", "FORWARD", "-s", lab.sandboxes["c1"].ip(), "-d",
                        c2.ip(), "-p", "icmp", "--icmp-type", "echo-request",
                        "-j", "DROP"])                            # firewall + reachability
    netns.sysctl_write(host_ns, "net.ipv4.ip_forward", 0)        # sysctls
    report = diff(lab, docker)
    keys = {(d.section, d.key) for d in report.differences if not known_gap("bridge", d)}
    assert ("interfaces", "c2:eth0") in keys
    assert ("sysctls", "host:net.ipv4.ip_forward") in keys
    assert ("firewall", "host") in keys
    assert ("reachability", "c1 -> c2@bridge") in keys
    assert ("reachability", "c2 -> c1@bridge") not in keys      # ping replies are not forwarded
    assert len(keys) == 4, report.text()
    text = report.text()
    assert "c2:eth0: lab container veth mtu=1400" in text and "docker container veth mtu=1500" in text
    assert "- host: -A FORWARD -s 172.17.0.2/32 -d 172.17.0.3/32 -p icmp -m icmp --icmp-type 8 " \
        "-j DROP   (lab only)" in text


def test_cli_exit_codes_and_json(engine_labs, docker_engine, tmp_path):
    """Exit 1 with differences (text and JSON); exit 0 for an engine compared with itself."""
    from nettrace.docker.discover import discover
    from nettrace.docker.mirror import mirror
    from nettrace.topology import netns
    lab = engine_labs("bridge", as_name="ntdcli")
    mirror(docker_engine, lab)
    netns.sysctl_write(lab.hosts["host"].netns, "net.ipv4.ip_forward", 0)   # one difference
    proc = run_cli("lab", "diff", "ntdcli", "--docker", docker_engine.url)
    assert proc.returncode == 1, proc.stderr
    assert "difference(s)" in proc.stdout and "net.ipv4.ip_forward" in proc.stdout
    proc = run_cli("lab", "diff", "ntdcli", "--docker", docker_engine.url, "--json", "--no-ping")
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["equivalent"] is False and data["reachability"] == {}
    # the engine itself, saved as a lab: equivalent
    itself = discover(docker_engine.url)
    itself.name = "ntd-self"
    path = itself.save()
    try:
        proc = run_cli("lab", "diff", "ntd-self", "--docker", docker_engine.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "equivalent" in proc.stdout
    finally:
        import os
        os.unlink(path)


def test_cli_errors_name_the_problem(labs, tmp_path):
    proc = run_cli("lab", "diff", "bridge")
    assert proc.returncode == 2 and "--docker" in proc.stderr
    labs("bridge")
    proc = run_cli("lab", "diff", "bridge", "--docker", f"unix://{tmp_path}/none.sock")
    assert proc.returncode == 2 and "cannot reach the Docker engine" in proc.stderr
    proc = run_cli("lab", "diff", "overlay-missing", "--docker", f"unix://{tmp_path}/x.sock")
    assert proc.returncode == 2 and "no running lab named 'overlay-missing'" in proc.stderr


def test_multi_host_lab_needs_a_host(labs, docker_scenario):
    from nettrace.docker.diff import diff
    from nettrace.docker.discover import discover
    from nettrace.errors import NettraceError
    lab, docker = labs("overlay"), discover(docker_scenario.engine.url)
    with pytest.raises(NettraceError, match=r"2 Docker hosts \(host1, host2\).*--host"):
        diff(lab, docker)
    with pytest.raises(NettraceError, match="--host host9: lab overlay has hosts host1, host2"):
        diff(lab, docker, host="host9")
