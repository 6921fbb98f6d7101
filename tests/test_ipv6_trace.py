"""IPv6 traced hop by hop like IPv4: ICMPv6 echo, TCP, UDP and neighbour discovery on the
dual-stack lab (real namespaces, real eBPF probes, real packets), plus the pure parts."""

from __future__ import annotations

import socket

import pytest

from conftest import needs_root
from nettrace.errors import NettraceError
from nettrace.inject import frames
from nettrace.inject.fingerprint import K_FLOW, K_ICMP, K_ND, K_PORT, FingerprintFactory
from nettrace.trace.assemble import REPLY, REQUEST, classify
from nettrace.trace.events import ETH_P_IPV6, parse_headers
from nettrace.inject.request import InjectRequest


def test_ipv6_fingerprints_keys_and_packets():
    f = FingerprintFactory(seed=7)
    echo = f.new("icmp", "fd00:40::3", "fd00:40::4")
    assert echo.family == 6 and echo.ip_id is None and 0 < echo.flow_label < 1 << 20
    assert echo.keys() == [(K_FLOW, 58, echo.flow_label),
                           (K_ICMP, 58, echo.icmp_id << 16 | echo.icmp_seq)]
    raw = bytes(frames.build_l3(echo, size=200))
    assert len(raw) == 200 and raw[0] >> 4 == 6 and raw[6] == 58
    assert int.from_bytes(raw[1:4], "big") & 0xFFFFF == echo.flow_label
    tcp = f.new("tcp", "fd00:40::3", "fd00:40::4", 80)
    assert tcp.keys() == [(K_FLOW, 6, tcp.flow_label), (K_PORT, 6, tcp.sport)]
    nd = f.new("nd", "fd00:40::3", "fd00:40::4")
    assert nd.keys() == [(K_ND, 0, 4)]
    frame = bytes(frames.build_l2(nd, "02:42:0a:28:00:03"))
    assert frame[:6] == bytes.fromhex("3333ff000004")                  # solicited-node group
    assert socket.inet_ntop(socket.AF_INET6, frame[14 + 24:14 + 40]) == "ff02::1:ff00:4"
    with pytest.raises(NettraceError, match="--proto nd"):
        f.new("arp", "fd00:40::3", "fd00:40::4")


def test_ipv6_headers_and_request_reply():
    f = FingerprintFactory(seed=3)
    fp = f.new("icmp", "fd00:40::3", "fd00:40::4")
    pkt = parse_headers(bytes(frames.build_l3(fp)), False, ETH_P_IPV6)
    assert (pkt.src, pkt.dst, pkt.proto, pkt.info) == ("fd00:40::3", "fd00:40::4", "ipv6-icmp",
                                                      "echo-request")
    assert pkt.flow_label == fp.flow_label and pkt.sport == fp.icmp_id
    assert classify(pkt, fp) == REQUEST
    from scapy.layers.inet6 import ICMPv6EchoReply, IPv6
    reply = IPv6(src="fd00:40::4", dst="fd00:40::3", fl=99) / ICMPv6EchoReply(id=fp.icmp_id, seq=1)
    assert classify(parse_headers(bytes(reply), False, ETH_P_IPV6), fp) == REPLY
    other = IPv6(src="fd00:40::4", dst="fd00:40::3") / ICMPv6EchoReply(id=fp.icmp_id ^ 1, seq=1)
    assert classify(parse_headers(bytes(other), False, ETH_P_IPV6), fp) is None
    nd = f.new("nd", "fd00:40::3", "fd00:40::4")
    ns = parse_headers(bytes(frames.build_l2(nd, "02:42:0a:28:00:03")), True, 0)
    assert ns.info == "neighbor-solicit fd00:40::4" and classify(ns, nd) == REQUEST


def test_ipv6_targets_resolve():
    from nettrace.topology.model import Endpoint, Lab, Sandbox
    from nettrace.trace.endpoints import resolve_source, resolve_target
    lab = Lab("l")
    for name, v4, v6 in (("c1", "10.40.0.3", "fd00:40::3"), ("c2", "10.40.0.4", "fd00:40::4")):
        lab.sandboxes[name] = Sandbox(name, "host", f"ns.{name}", endpoints=[Endpoint(
            f"{name}-dual", name, "dual", "eth0", "02:42:00:00:00:01", v4, 24, 1500,
            ipv6=v6, prefixlen6=64)])
    assert resolve_target(lab, "c2", "c1").ip == "10.40.0.4"
    assert resolve_target(lab, "c2", "c1", family=6).ip == "fd00:40::4"
    t = resolve_target(lab, "[fd00:40::4]:8080")
    assert (t.ip, t.port, t.netns) == ("fd00:40::4", 8080, "ns.c2")
    assert resolve_source(lab, "c1", toward="fd00:40::4").ip == "fd00:40::3"
    with pytest.raises(NettraceError, match="1-65535"):
        resolve_target(lab, "[fd00:40::4]:0")


@pytest.fixture(scope="module")
def tracer6(labs):
    from nettrace.trace import Tracer
    lab = labs("dual-stack", as_name="tr6-dual")
    with Tracer(lab) as tr:
        yield tr, lab


def _seq(path):
    return [(h.device, h.role, h.point.value) for h in path.hops if h.role]


@needs_root
def test_icmpv6_echo_hop_by_hop_and_reply(tracer6):
    tr, lab = tracer6
    (p,) = tr.path(InjectRequest("c1", "c2", family=6))
    br = lab.network("dual").device
    c1, c2 = lab.sandbox("c1"), lab.sandbox("c2")
    v1, v2 = c1.endpoints[0].host_ifname, c2.endpoints[0].host_ifname
    assert p.verdict.kind == "delivered" and p.verdict.reason == "answered: echo-reply"
    assert _seq(p) == [
        ("eth0", "container", "nf:LOCAL_OUT"), ("eth0", "container", "nf:POST_ROUTING"),
        ("eth0", "container", "tp:net_dev_queue"), (v1, "veth-host", "tp:netif_receive_skb"),
        (br, "bridge", "nf:PRE_ROUTING"), (br, "bridge", "nf:FORWARD"),
        (br, "bridge", "nf:POST_ROUTING"), (v2, "veth-host", "tp:net_dev_queue"),
        ("eth0", "container", "tp:netif_receive_skb"), ("eth0", "container", "nf:PRE_ROUTING"),
        ("eth0", "container", "nf:LOCAL_IN")]
    assert all(h.family == "ipv6" for h in p.hops if h.point.value.startswith("nf:"))
    first = p.hops[0].packet
    assert (first.src, first.dst, first.info) == ("fd00:40::3", "fd00:40::4", "echo-request")
    assert p.reply is not None and p.reply.verdict.kind == "delivered"
    assert p.reply.hops[0].packet.info == "echo-reply"
    assert [h.sandbox for h in p.reply.hops if h.point.value == "nf:LOCAL_IN"] == ["c1"]


@needs_root
def test_neighbour_discovery_traced_like_arp(tracer6):
    tr, lab = tracer6
    (p,) = tr.path(InjectRequest("c1", "c2", proto="nd"))
    assert p.verdict.kind == "delivered"
    assert p.hops[0].packet.info == "neighbor-solicit fd00:40::4"
    assert p.hops[0].packet.dst == "ff02::1:ff00:4"                  # solicited-node multicast
    assert any(h.sandbox == "c2" for h in p.hops)
    assert p.reply is not None
    assert {h.packet.info for h in p.reply.hops if h.packet} == {"neighbor-advert fd00:40::4"}
    assert any(h.sandbox == "c1" for h in p.reply.hops)


@needs_root
def test_tcp_and_udp_over_ipv6_answered_by_the_kernel(tracer6):
    tr, _lab = tracer6
    (tcp,) = tr.path(InjectRequest("c1", "[fd00:40::4]:80", proto=None))
    assert tcp.proto == "tcp" and tcp.verdict.reason == "answered: RST-ACK"
    assert tcp.hops[0].packet.info == "SYN" and tcp.hops[0].packet.dport == 80
    (udp,) = tr.path(InjectRequest("c1", "c2", proto="udp", dport=53, family=6))
    assert udp.verdict.kind == "delivered"
    assert udp.reply is not None and udp.reply.hops[0].packet.info == "dest-unreach"
    assert udp.reply.hops[0].packet.proto == "ipv6-icmp"


OVERLAY_MACVLAN_V6 = """
hosts: [host1, host2]
networks:
  - name: ov
    driver: overlay
    subnet: 10.0.9.0/24
    ipv6: true
    subnet_v6: "fd00:9::/64"
  - name: mv
    driver: macvlan
    subnet: 192.168.60.0/24
    ipv6: true
    subnet_v6: "fd00:60::/64"
    host: host1
containers:
  - {name: o1, host: host1, networks: [ov]}
  - {name: o2, host: host2, networks: [ov]}
  - {name: m1, host: host1, networks: [mv]}
  - {name: m2, host: host1, networks: [mv]}
"""


@pytest.fixture(scope="module")
def tracer_ov6():
    from nettrace.topology import builder, spec
    from nettrace.trace import Tracer
    lab = builder.up(spec.parse(OVERLAY_MACVLAN_V6, default_name="ov6"))
    try:
        with Tracer(lab) as tr:
            yield tr, lab
    finally:
        builder.down(lab.name, quiet=True)


@needs_root
def test_overlay_carries_ipv6_inside_vxlan(tracer_ov6):
    """An IPv6 echo between hosts: inner IPv6 through br0, VXLAN (VNI) over the IPv4 underlay."""
    tr, lab = tracer_ov6
    (p,) = tr.path(InjectRequest("o1", "o2", family=6))
    assert p.verdict.kind == "delivered" and p.verdict.reason == "answered: echo-reply"
    places = [(h.sandbox or h.host, h.device) for h in p.hops if h.role]
    vni = lab.network("ov").vni
    assert places[0] == ("o1", "eth0") and places[-1] == ("o2", "eth0")
    assert ("ov-ov", "vxlan0") in places and ("host1", "eth0") in places and ("host2", "eth0") in places
    wrapped = [h for h in p.hops if h.packet and h.packet.outer]
    assert wrapped and all(h.packet.vni == vni for h in wrapped)
    assert {h.packet.outer.src for h in wrapped} == {lab.hosts["host1"].address}
    assert {(h.packet.src, h.packet.dst) for h in wrapped} == {("fd00:9::2", "fd00:9::3")}
    assert p.reply is not None and p.reply.verdict.kind == "delivered"


@needs_root
def test_macvlan_ipv6_children_through_the_parent(tracer_ov6):
    tr, _lab = tracer_ov6
    (p,) = tr.path(InjectRequest("m1", "m2", family=6))
    assert p.verdict.kind == "delivered"
    seq = [(h.sandbox or h.host, h.device, h.point.value) for h in p.hops if h.role]
    assert seq[0] == ("m1", "eth0", "nf:LOCAL_OUT")
    assert ("m2", "eth0", "tc:ingress") in seq             # the receive no tracepoint sees
    assert seq[-1] == ("m2", "eth0", "nf:LOCAL_IN")
    assert p.reply is not None and p.reply.verdict.kind == "delivered"


@needs_root
def test_ipv6_only_lab(labs):
    """No IPv4 at all: names resolve to IPv6 without -6, the published port answers over
    IPv6 through the ip6tables DNAT, and ARP is refused with the way to go."""
    from conftest import run_cli
    from nettrace.trace import Tracer
    lab = labs("ipv6-only", as_name="tr6-only")
    assert all(ep.ipv4 is None and ep.ipv6 for sb in lab.sandboxes.values() for ep in sb.endpoints)
    assert lab.network("v6net").subnet is None and lab.network("v6net").gateway is None
    with Tracer(lab) as tr:
        (echo,) = tr.path(InjectRequest("c1", "c2", proto=None))
        (syn,) = tr.path(InjectRequest("client", f"[{lab.hosts['host'].address6}]:8080", proto=None))
    assert echo.hops[0].packet.src == lab.sandbox("c1").ip6()
    assert echo.verdict.reason == "answered: echo-reply"
    assert syn.verdict.kind == "delivered" and syn.verdict.reason == "answered: SYN-ACK"
    assert any("(DNAT)" in c for h in syn.hops for c in h.changes)
    proc = run_cli("path", lab.name, "c1", "c2", "--proto", "arp")
    assert proc.returncode == 2 and "--proto nd" in proc.stderr and "Traceback" not in proc.stderr
