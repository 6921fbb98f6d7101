"""Docker 29, nftables backend: `table ip docker-bridges` of every scenario in Docker's own
rule documents (fixtures derived from moby's nftablesdoc, tests/fixtures/moby-rules/nftables),
rendered without root and loaded with nft -f into a real lab's host namespace."""

from __future__ import annotations

import pytest

from conftest import needs_root, run_cli
from fwref import (fixture, lab_text, nft_canon, nft_diff, nft_document_canon, nft_normalise,
                   paper_lab, scenarios)
from nettrace.topology import firewall, netns, spec

SCENARIOS = scenarios("nftables")


def test_every_nftables_document_has_a_lab():
    import os
    from fwref import FIXTURES
    docs = sorted(f[:-4] for f in os.listdir(os.path.join(FIXTURES, "nftables")))
    assert docs == SCENARIOS and len(docs) == 8


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renderer_matches_docker_document(scenario):
    lab = paper_lab(spec.parse(lab_text(scenario, "nftables"), default_name="nftdoc"))
    profile = firewall.profile_for(lab)
    assert profile.name == "docker29-nftables"
    got = nft_normalise(nft_document_canon(profile.render(lab, lab.hosts["host"]).document))
    assert nft_diff(nft_canon(fixture("nftables", scenario)), got) == []


def test_nft_normalisation_is_needed_and_only_for_two_lines():
    lab = paper_lab(spec.parse(lab_text("new-daemon", "nftables"), default_name="n"))
    raw = nft_document_canon(firewall.render_host(lab, lab.hosts["host"]))
    diff = nft_diff(nft_canon(fixture("nftables", "new-daemon")), raw)
    assert [d.split(":")[0] for d in diff] == ["chain filter-FORWARD", "chain nat-OUTPUT"]


@needs_root
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lab_ruleset_matches_docker_document(scenario, make_lab):
    lab = make_lab(text=lab_text(scenario, "nftables"), name=f"nft{SCENARIOS.index(scenario)}")
    host = lab.hosts["host"]
    listed = netns.run(host.netns, ["nft", "list", "table", "ip", "docker-bridges"]).stdout
    assert nft_diff(nft_canon(fixture("nftables", scenario)), nft_normalise(nft_canon(listed))) == []
    # Docker's nftables backend leaves iptables alone
    assert "-A " not in netns.run(host.netns, ["iptables-save"]).stdout
    ours = [r for r in lab.rules if r.host == "host"]
    assert ours and all(r.table == "docker-bridges" and r.purpose.value != "user-firewall"
                        for r in ours)
    assert len(ours) == sum(1 for ln in listed.splitlines() if "counter" in ln or "vmap" in ln)


@needs_root
def test_nftables_paths_name_rules_with_their_comment(make_lab):
    text = lab_text("usernet-portmap", "nftables").replace("\nnetworks:\n", "\nclients: [client]\nnetworks:\n", 1)
    lab = make_lab(text=text, name="nftpath")
    host, client = lab.hosts["host"], lab.clients["client"]
    netns.run(client.netns, ["ip", "route", "replace", "192.0.2.0/24", "via", host.address])
    out = run_cli("path", lab.name, "client", "192.0.2.2", "--proto", "tcp", "--dport", "80",
                  "--expect", "dropped", env={"COLUMNS": "400"})
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert ('by ip docker-bridges raw-PREROUTING rule 1: ip daddr 192.0.2.2 iifname != "bridge1" '
            'counter drop comment "DROP DIRECT ACCESS"') in text, text
    ok = run_cli("path", lab.name, "c1", client.address, env={"COLUMNS": "400"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert 'filter-forward-out__bridge1 rule 2: counter accept comment "OUTGOING"' in \
        " ".join(ok.stdout.split())
    # lab show lists the firewall in the profile's syntax
    show = run_cli("lab", "show", lab.name, check=True).stdout
    assert "(nft list table ip docker-bridges in" in show
    assert 'comment "DROP DIRECT ACCESS"' in show and "-A DOCKER" not in show


@pytest.fixture(scope="module")
def nft_labs():
    """Embedded labs brought up under Docker 29 with the nftables backend (one per module)."""
    from nettrace.topology import builder
    from nettrace.topology.model import EngineProfile
    up: dict = {}

    def get(name: str):
        if name not in up:
            s = spec.load(name, name=f"nft-{name}")
            s.engine = EngineProfile(version="29", firewall="nftables")
            up[name] = builder.up(s)
        return up[name]

    yield get
    for lab in up.values():
        builder.down(lab.name, quiet=True)


@needs_root
def test_embedded_labs_reachability_under_nftables(nft_labs):
    """The reachability every driver test asserts under iptables holds with the nftables
    backend too: same-network traffic, isolation, ICC off, internal, published ports (from
    the client, and from a container through docker-proxy), overlay across hosts."""
    from netutil import connect, peer_seen, ping, serve_once
    lab = nft_labs("bridge")
    assert ping(lab.sandbox("c1").netns, lab.sandbox("c2").ip())
    lab = nft_labs("user-bridges")
    c1, c2, c3 = (lab.sandbox(n) for n in ("c1", "c2", "c3"))
    assert ping(c1.netns, c2.ip()) and not ping(c1.netns, c3.ip()) and not ping(c3.netns, c1.ip())
    lab = nft_labs("icc-off")
    assert not ping(lab.sandbox("c1").netns, lab.sandbox("c2").ip())
    assert ping(lab.sandbox("c1").netns, lab.clients["client"].address)     # egress
    lab = nft_labs("internal")
    assert ping(lab.sandbox("c1").netns, lab.sandbox("c2").ip())
    assert not ping(lab.sandbox("c1").netns, lab.clients["client"].address)
    lab = nft_labs("published-port")
    web, client, host = lab.sandbox("web"), lab.clients["client"], lab.hosts["host"]
    server = serve_once(web.netns, "tcp", 80)
    assert connect(client.netns, "tcp", host.address, 8080) == "hello"
    assert peer_seen(server) == client.address, "DNAT keeps the client's address"
    server = serve_once(web.netns, "tcp", 80)
    assert connect(lab.sandbox("c1").netns, "tcp", host.address, 8080) == "hello"   # proxy
    peer_seen(server)
    assert connect(client.netns, "tcp", host.address, 8081).startswith("error")
    assert not ping(client.netns, web.ip())          # no route to it, and raw drops it anyway
    lab = nft_labs("overlay")
    assert ping(lab.sandbox("c1").netns, lab.sandbox("c2").ip())
    assert all(r.table == "docker-bridges" for r in lab.rules
               if r.host in lab.hosts and r.family == "ip")
