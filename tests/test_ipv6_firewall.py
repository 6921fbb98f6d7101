"""IPv6 rules per engine profile: Docker 29 renders ip6tables rules in the same layout as
iptables for IPv6 networks (Docker's rule documents: "ip6tables rules follow the same pattern
as iptables rules"); Docker 20.10 (ip6tables off by default) installs none. Pure rendering,
then the real kernel: a published port answered over IPv6 from the external client through
the DNAT, and user-defined networks isolated over IPv6 under 29 but not under 20.10."""

from __future__ import annotations

import pytest

from conftest import needs_root
from nettrace.topology import firewall, netns, spec
from nettrace.topology.firewall.purposes import RulePurpose
from nettrace.topology.model import Endpoint, Host, Lab, Network, Sandbox, Scope
from nettrace.inject.request import InjectRequest

TWO_NETS = """
engine: {{version: "{version}"}}
clients: [client]
networks:
  - {{name: front, subnet: 10.10.0.0/24, ipv6: true, subnet_v6: "fd00:10::/64"}}
  - {{name: back, subnet: 10.20.0.0/24, ipv6: true, subnet_v6: "fd00:20::/64"}}
containers:
  - {{name: c1, networks: [front]}}
  - {{name: c2, networks: [front]}}
  - {{name: c3, networks: [back]}}
"""


def paper(version: str = "29", ipv6: bool = True) -> Lab:
    """A dual-stack bridge with a published port, as the builder records it (no kernel)."""
    lab = Lab("v6", engine=spec.parse(f"engine: {{version: '{version}'}}\ncontainers: []\n").engine)
    lab.hosts["host"] = Host("host", "ns.host")
    lab.networks.append(Network("dual", "bridge", Scope.LOCAL, "0" * 64, "host",
                                subnet="10.40.0.0/24", gateway="10.40.0.1", device="br-dual",
                                ipv6=ipv6, subnet_v6="fd00:40::/64" if ipv6 else None,
                                gateway_v6="fd00:40::1" if ipv6 else None))
    lab.sandboxes["web"] = Sandbox("web", "host", "ns.web", published=["8080:80/tcp"],
                                   endpoints=[Endpoint("web-dual", "web", "dual", "eth0",
                                                       "02:42:0a:28:00:02", "10.40.0.2", 24, 1500,
                                                       ipv6="fd00:40::2" if ipv6 else None,
                                                       prefixlen6=64 if ipv6 else None)])
    return lab


def test_docker29_renders_ip6tables_for_ipv6_networks():
    lab = paper()
    ruleset = firewall.profile_for(lab).render(lab, lab.hosts["host"])
    v4, v6 = ruleset.document, ruleset.ipv6.document
    assert "-A DOCKER ! -i br-dual -p tcp -m tcp --dport 8080 -j DNAT --to-destination " \
           "10.40.0.2:80" in v4
    assert "fd00" not in v4
    for line in (":FORWARD DROP [0:0]",                       # the IPv6 FORWARD policy users trip on
                 "-A PREROUTING -d fd00:40::2/128 ! -i br-dual -j DROP",
                 "-A DOCKER -d fd00:40::2/128 ! -i br-dual -o br-dual -p tcp -m tcp --dport 80 "
                 "-j ACCEPT",
                 "-A DOCKER ! -i br-dual -o br-dual -j DROP",
                 "-A POSTROUTING -s fd00:40::/64 ! -o br-dual -j MASQUERADE",
                 "-A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER",
                 "-A DOCKER ! -i br-dual -p tcp -m tcp --dport 8080 -j DNAT --to-destination "
                 "[fd00:40::2]:80"):
        assert line in v6, line
    assert "10.40.0" not in v6
    purposes = {r.text: r.purpose for r in ruleset.ipv6.rules}
    assert purposes["-A POSTROUTING -s fd00:40::/64 ! -o br-dual -j MASQUERADE"] == \
        RulePurpose.MASQUERADE


def test_no_ipv6_rules_without_ipv6_networks_nor_on_20_10():
    lab = paper(ipv6=False)
    assert firewall.profile_for(lab).render(lab, lab.hosts["host"]).ipv6 is None
    lab = paper("20.10")                  # ip6tables is off by default in Docker 20.10
    assert firewall.profile_for(lab).render(lab, lab.hosts["host"]).ipv6 is None


def test_port_bound_to_an_ipv4_address_is_not_published_over_ipv6():
    lab = paper()
    lab.sandboxes["web"].published = ["192.168.50.11:8080:80/tcp"]
    v6 = firewall.profile_for(lab).render(lab, lab.hosts["host"]).ipv6.document
    assert "DNAT" not in v6 and "--dport 80" not in v6


def test_docker29_nftables_has_an_ip6_docker_bridges_table():
    lab = paper()
    lab.engine = spec.parse("engine: {firewall: nftables}\ncontainers: []\n").engine
    ruleset = firewall.profile_for(lab).render(lab, lab.hosts["host"])
    v6 = ruleset.ipv6.document
    assert "table ip6 docker-bridges {" in v6 and "table ip docker-bridges" not in v6
    for text in ('dnat to [fd00:40::2]:80 comment "DNAT"',
                 'ip6 daddr fd00:40::2 iifname != "br-dual" counter drop comment '
                 '"DROP DIRECT ACCESS"',
                 'ip6 saddr fd00:40::/64 counter masquerade comment "MASQUERADE"',
                 "ip6 daddr fd00:40::2 tcp dport 80 counter accept"):
        assert text in v6, text
    assert "fd00" not in ruleset.document


@needs_root
@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_published_port_answers_over_ipv6_through_the_dnat(make_lab, backend):
    from nettrace.trace import Tracer
    text = "engine: {firewall: %s}\n" % backend + open(spec.embedded_labs()["dual-stack"]).read()
    lab = make_lab(text=text, name=f"ds6-{backend[:3]}")
    host = lab.hosts["host"]
    if backend == "iptables":
        assert "-j DNAT --to-destination [fd00:40::2]:80" in \
            netns.run(host.netns, ["ip6tables-save", "-t", "nat"]).stdout
    else:
        assert "dnat to [fd00:40::2]:80" in \
            netns.run(host.netns, ["nft", "list", "table", "ip6", "docker-bridges"]).stdout
    assert any(r.family == "ip6" and r.purpose == RulePurpose.DNAT for r in lab.rules)
    with Tracer(lab) as tr:
        (p,) = tr.path(InjectRequest("client", f"[{host.address6}]:8080", proto=None))
    assert p.verdict.kind == "delivered" and p.verdict.reason == "answered: SYN-ACK"
    dnat = next(h for h in p.hops if h.changes and "(DNAT)" in " ".join(h.changes))
    assert dnat.host == "host" and dnat.hook == "PRE_ROUTING"
    assert dnat.packet.dst == "fd00:40::2" and dnat.packet.dport == 80
    assert dnat.rule is not None and dnat.rule.family == "ip6"
    rule = lab.rule_for("host", "ip6", dnat.rule.table, dnat.rule.chain, dnat.rule.handle)
    assert rule is not None and rule.purpose == RulePurpose.DNAT
    assert "[fd00:40::2]:80" in rule.text
    assert p.reply is not None and p.reply.verdict.kind == "delivered"
    assert p.reply.hops[-1].packet.src == host.address6          # un-DNATed on the way back


@needs_root
@pytest.mark.parametrize("version,expected", [("29", "dropped"), ("20.10", "delivered")])
def test_ipv6_isolation_depends_on_the_profile(make_lab, version, expected):
    """Docker 29 isolates user-defined networks over IPv6 as over IPv4; 20.10 without
    ip6tables forwards IPv6 between them (what IPv4 hides, IPv6 exposes)."""
    from nettrace.trace import Tracer
    lab = make_lab(text=TWO_NETS.format(version=version), name=f"iso6-{version.replace('.', '')}")
    with Tracer(lab) as tr:
        (v4,) = tr.path(InjectRequest("c1", "c3"))
        (v6,) = tr.path(InjectRequest("c1", "c3", family=6))
    assert v4.verdict.kind == "dropped"
    assert v6.verdict.kind == expected, v6.verdict
    if expected == "dropped":
        assert v6.verdict.rule is not None and v6.verdict.rule.family == "ip6"


ICC_INTERNAL_V6 = """
clients: [client]
networks:
  - {name: noicc, subnet: 10.96.0.0/24, icc: false, ipv6: true, subnet_v6: "fd00:96::/64"}
  - {name: internal, subnet: 10.97.0.0/24, internal: true, ipv6: true, subnet_v6: "fd00:97::/64"}
containers:
  - {name: n1, networks: [noicc]}
  - {name: n2, networks: [noicc]}
  - {name: i1, networks: [internal]}
  - {name: i2, networks: [internal]}
"""


@needs_root
def test_icc_off_and_internal_networks_over_ipv6(make_lab):
    """ICC off drops bridged IPv6 in ip6tables FORWARD, neighbour discovery included (unlike
    ARP, NDP is IPv6 and meets the rule), so the echo never leaves n1; an internal network
    keeps IPv6 inside: no route out."""
    from nettrace.trace import Tracer
    lab = make_lab(text=ICC_INTERNAL_V6, name="iccint6")
    with Tracer(lab) as tr:
        (nd,) = tr.path(InjectRequest("n1", "n2", proto="nd"))
        (icc,) = tr.path(InjectRequest("n1", "n2", family=6))
        (out,) = tr.path(InjectRequest("i1", "client", family=6))
    # (neighbour discovery is not marked for nft trace: the drop is placed, not attributed)
    br = lab.network("noicc").device
    assert nd.verdict.kind == "dropped" and nd.verdict.where == f"host:{br} FORWARD"
    assert nd.verdict.reason.startswith("NETFILTER_DROP")
    (icc_rule,) = [r for r in lab.rules if r.family == "ip6" and r.purpose == RulePurpose.ICC
                   and r.network == "noicc"]
    assert icc_rule.text == f"-A DOCKER-FORWARD -i {br} -o {br} -j DROP"
    assert icc.verdict.kind == "dropped" and icc.verdict.where == "n1:eth0"   # unresolved
    # an internal network has no default route: the sender's own stack refuses it
    assert out.verdict.kind == "dropped" and out.verdict.where == "i1"


def test_ip6tables_setting_of_the_daemon():
    """engine.ip6tables is daemon.json's "ip6tables": 20.10 with it on renders its own layout
    for IPv6 (DOCKER-ISOLATION stages, NAT66); 29 with it off renders none."""
    lab = paper("20.10")
    lab.engine = spec.parse("engine: {version: '20.10', ip6tables: true}\ncontainers: []\n").engine
    v6 = firewall.profile_for(lab).render(lab, lab.hosts["host"]).ipv6.document
    assert "-A FORWARD -j DOCKER-ISOLATION-STAGE-1" in v6
    assert "-j DNAT --to-destination [fd00:40::2]:80" in v6 and "10.40.0" not in v6
    lab = paper("29")
    lab.engine = spec.parse("engine: {ip6tables: false}\ncontainers: []\n").engine
    assert firewall.profile_for(lab).render(lab, lab.hosts["host"]).ipv6 is None
    with pytest.raises(spec.SpecError) as err:
        spec.parse("engine: {ip6tables: maybe}\ncontainers: []\n", file="lab.yaml")
    assert err.value.field == "engine.ip6tables"
