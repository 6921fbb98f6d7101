"""IPv6 in labs: the lab keys, Docker-like IPv6 IPAM, and dual-stack networks on the real kernel."""

from __future__ import annotations

import ipaddress

import pytest

from conftest import needs_root
from nettrace.errors import SpecError
from nettrace.topology import netns, spec
from nettrace.topology.ipam import Ipam, ula_prefix


def parse(text: str):
    return spec.parse(text, file="lab.yaml")


BAD = {
    "v6 subnet without ipv6": ("networks:\n  - name: a\n    subnet_v6: fd00:1::/64\n", 3,
                               "networks[0].subnet_v6", "needs ipv6: true"),
    "bad v6 cidr": ("networks:\n  - name: a\n    ipv6: true\n    subnet_v6: fd00:1::5/64\n", 4,
                    "networks[0].subnet_v6", "bad IPv6 CIDR"),
    "v6 gateway outside": ("networks:\n  - name: a\n    ipv6: true\n    subnet_v6: fd00:1::/64\n"
                           "    gateway_v6: fd00:2::1\n", 5, "networks[0].gateway_v6",
                           "not in subnet_v6"),
    "no family at all": ("networks:\n  - name: a\n    ipv4: false\n", 3, "networks[0].ipv4",
                         "needs IPv4 or IPv6"),
    "v6-only with v4 subnet": ("networks:\n  - name: a\n    ipv4: false\n    ipv6: true\n"
                               "    subnet: 10.1.0.0/24\n", 5, "networks[0].subnet", "no IPv4"),
    "ip6 on v4 network": ("networks:\n  - name: a\ncontainers:\n  - name: c1\n"
                          "    networks: [{name: a, ip6: 'fd00::5'}]\n", 5,
                          "containers[0].networks[0].ip6", "has no IPv6"),
    "ip6 without subnet_v6": ("networks:\n  - name: a\n    ipv6: true\ncontainers:\n  - name: c1\n"
                              "    networks: [{name: a, ip6: 'fd00::5'}]\n", 6,
                              "containers[0].networks[0].ip6", "needs the network's subnet_v6"),
    "ip6 outside subnet": ("networks:\n  - name: a\n    ipv6: true\n    subnet_v6: fd00:1::/64\n"
                           "containers:\n  - name: c1\n    networks: [{name: a, ip6: 'fd00:2::5'}]\n",
                           7, "containers[0].networks[0].ip6", "not in fd00:1::/64"),
    "overlapping v6": ("networks:\n  - name: a\n    ipv6: true\n    subnet_v6: fd00:1::/64\n"
                       "  - name: b\n    ipv6: true\n    subnet_v6: fd00:1::/56\n", 5,
                       "networks.b.subnet_v6", "overlaps"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_ipv6_keys_name_line_and_field(case):
    text, line, field, words = BAD[case]
    with pytest.raises(SpecError) as err:
        parse(text)
    assert (err.value.line, err.value.field) == (line, field), str(err.value)
    assert words in str(err.value)


def test_ipv6_keys_and_docker_option_names():
    s = parse("networks:\n  - name: a\n    com.docker.network.enable_ipv6: 'true'\n"
              "  - name: b\n    ipv6: true\n    ipv4: false\n    subnet_v6: fd00:9::/64\n"
              "containers:\n  - name: c1\n    networks: [a, {name: b, ip6: 'fd00:9::9'}]\n")
    a, b = s.network("a"), s.network("b")
    assert a.ipv6 and a.ipv4 and a.subnet_v6 is None
    assert b.ipv6 and not b.ipv4 and b.subnet_v6 == "fd00:9::/64"
    assert s.containers[0].networks[1].ip6 == "fd00:9::9"


def test_ula_pool_like_docker():
    """No subnet given: a /64 out of a ULA /48 (fd00::/8 + 40-bit id), stable per engine."""
    p = ula_prefix("lab/host")
    assert p.prefixlen == 48 and p.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert ula_prefix("lab/host") == p and ula_prefix("lab/other") != p
    ipam = Ipam([])
    first = ipam.subnet6("host", None, seed="lab/host")
    second = ipam.subnet6("host", None, seed="lab/host")
    assert first.prefixlen == second.prefixlen == 64
    assert first.subnet_of(p) and second.subnet_of(p) and first != second
    gw = ipam.reserve("host", first, str(next(first.hosts())))
    assert str(gw).endswith("::1")
    assert str(ipam.allocate("host", first)).endswith("::2")


@needs_root
def test_dual_stack_lab(make_lab):
    lab = make_lab("dual-stack", name="ds")
    web, c1, c2 = (lab.sandbox(n) for n in ("web", "c1", "c2"))
    net = lab.network("dual")
    assert (net.subnet_v6, net.gateway_v6) == ("fd00:40::/64", "fd00:40::1")
    assert [s.ip6() for s in (web, c1, c2)] == ["fd00:40::2", "fd00:40::3", "fd00:40::4"]
    assert [s.ip() for s in (web, c1, c2)] == ["10.40.0.2", "10.40.0.3", "10.40.0.4"]
    host = lab.hosts["host"].netns
    assert netns.sysctl_read(host, "net.ipv6.conf.all.forwarding") == "1"
    bridge = netns.run(host, ["ip", "-6", "addr", "show", "dev", net.device]).stdout
    assert "fd00:40::1/64" in bridge
    addr = netns.run(c1.netns, ["ip", "-6", "addr", "show", "dev", "eth0"]).stdout
    assert "fd00:40::3/64" in addr and "scope link" in addr        # global and link-local
    assert "default via fd00:40::1 dev eth0" in netns.run(c1.netns, ["ip", "-6", "route"]).stdout
    for target in ("fd00:40::4", "fd00:40::1"):
        assert netns.run(c1.netns, ["ping", "-6", "-c1", "-W2", target], check=False).returncode == 0
    client = lab.clients["client"]
    assert client.address6 == "2001:db8:50::100" and lab.hosts["host"].address6 == "2001:db8:50::11"
    assert netns.run(client.netns, ["ping", "-6", "-c1", "-W2", "2001:db8:50::11"],
                     check=False).returncode == 0


@needs_root
def test_automatic_ula_subnet_and_ipv4_untouched(make_lab):
    lab = make_lab(text="networks:\n  - name: a\n    ipv6: true\ncontainers:\n  - name: c1\n"
                        "    networks: [a]\n  - name: c2\n    networks: [bridge]\n", name="ula")
    net = lab.network("a")
    sub = ipaddress.IPv6Network(net.subnet_v6)
    assert sub.prefixlen == 64 and sub.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert lab.sandbox("c1").ip6() == str(sub.network_address + 2)
    assert lab.sandbox("c2").ip6() is None and lab.network("bridge").subnet_v6 is None
    out = netns.run(lab.netns_of("c1"), ["ping", "-6", "-c1", "-W2", net.gateway_v6], check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ipv6_only_needs_docker_28_or_later():
    text = "containers: []\nnetworks:\n  - name: v6\n    ipv6: true\n    ipv4: false\n"
    assert not parse(text).network("v6").ipv4                       # default profile: 29
    with pytest.raises(SpecError) as err:
        parse("engine: {version: '20.10'}\n" + text)
    assert err.value.field == "networks.v6.ipv4" and "Docker 28" in str(err.value)
