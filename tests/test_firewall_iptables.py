"""Docker 29, iptables backend: the rules of every scenario in Docker's own rule documents
(fixtures derived from moby's iptablesdoc, tests/fixtures/moby-rules/iptables), rendered
without root and loaded into a real lab's host namespace."""

from __future__ import annotations

import pytest

from conftest import needs_root
from fwref import fixture, ipt_canon, ipt_diff, lab_text, paper_lab, scenarios
from nettrace.topology import firewall, netns, spec

SCENARIOS = scenarios("iptables")


def test_every_iptables_document_has_a_lab():
    import os
    from fwref import FIXTURES
    docs = sorted(f[:-6] for f in os.listdir(os.path.join(FIXTURES, "iptables")))
    # swarm-portmap needs the routing mesh (ingress sandbox, IPVS), which nettrace does not
    # build: its other rules are checked on the overlay lab (test_swarm_host_...)
    assert sorted(set(docs) - set(SCENARIOS)) == ["swarm-portmap"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renderer_matches_docker_document(scenario):
    expected = ipt_canon(fixture("iptables", scenario))
    lab = paper_lab(spec.parse(lab_text(scenario, "iptables"), default_name="fwdoc"))
    profile = firewall.profile_for(lab)
    assert profile.name == "docker29-iptables"
    got = ipt_canon(profile.render(lab, lab.hosts["host"]).document, set(expected))
    assert ipt_diff(expected, got) == []


def test_host_ipv4_snat_replaces_masquerade():
    text = lab_text("usernet-portmap", "iptables").replace(
        "gateway: 192.0.2.1}", "gateway: 192.0.2.1, options: {com.docker.network.host_ipv4: "
        "192.168.50.11}}")
    lab = paper_lab(spec.parse(text, default_name="snat"))
    doc = firewall.render_host(lab, lab.hosts["host"])
    assert "-A POSTROUTING -s 192.0.2.0/24 ! -o bridge1 -j SNAT --to-source 192.168.50.11" in doc
    assert "-s 192.0.2.0/24 ! -o bridge1 -j MASQUERADE" not in doc


def test_isolated_gateway_mode_has_no_nat_and_no_port():
    text = lab_text("usernet-portmap", "iptables").replace(
        "gateway: 192.0.2.1}", "gateway: 192.0.2.1, gateway_mode: isolated}")
    lab = paper_lab(spec.parse(text, default_name="iso"))
    doc = firewall.render_host(lab, lab.hosts["host"])
    assert "--dport 8080" not in doc and "192.0.2.0/24" not in doc
    assert "-A DOCKER ! -i bridge1 -o bridge1 -j DROP" in doc
    assert "-A PREROUTING -d 192.0.2.2/32 ! -i bridge1 -j DROP" in doc


@needs_root
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lab_ruleset_matches_docker_document(scenario, make_lab):
    expected = ipt_canon(fixture("iptables", scenario))
    lab = make_lab(text=lab_text(scenario, "iptables"), name=f"ipt{SCENARIOS.index(scenario)}")
    saved = netns.run(lab.hosts["host"].netns, ["iptables-save"]).stdout
    assert ipt_diff(expected, ipt_canon(saved, set(expected))) == []
    # every rule is in the index, with its purpose; none is taken for the user's
    assert len([r for r in lab.rules if r.host == "host"]) == saved.count("\n-A ")
    assert all(r.purpose.value != "user-firewall" for r in lab.rules)


@needs_root
def test_swarm_host_matches_the_document_but_the_routing_mesh(make_lab):
    """swarm-portmap: a swarm host's docker0 and docker_gwbridge rules are the document's;
    what the routing mesh adds (DOCKER-INGRESS chains and jumps, the ingress sandbox's
    LOCAL-source MASQUERADE on docker_gwbridge) is not built by nettrace, so those document
    lines are set aside here, by name."""
    mesh = lambda line: "DOCKER-INGRESS" in line or line == (
        "-A POSTROUTING -o docker_gwbridge -m addrtype --src-type LOCAL -j MASQUERADE")
    doc = "\n".join(ln for ln in fixture("iptables", "swarm-portmap").splitlines() if not mesh(ln))
    expected = ipt_canon(doc)
    lab = make_lab("overlay", name="fwswarm")
    saved = netns.run(lab.hosts["host1"].netns, ["iptables-save"]).stdout
    assert ipt_diff(expected, ipt_canon(saved, set(expected))) == []
    assert sum(mesh(ln) for ln in fixture("iptables", "swarm-portmap").splitlines()) == 11
