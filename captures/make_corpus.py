"""Produce the golden-path corpus in captures/ with nettrace itself.

For each case: bring its embedded lab up, build the frames a container would send from
the live lab's addresses (MACs, IPs, gateway), write them as `<case>.pcap`, then replay
and trace them (`nettrace check --update`) to write the signatures (`frames:`) of
`<case>.paths.yaml` and the trace bundle `<case>.bundle.json.gz`. A case's `expect:`
block is written by hand and kept; a new case needs one before it is committed. Review
the golden diff before committing it.

    sudo NETTRACE_NS_PREFIX=ntc .venv/bin/python captures/make_corpus.py [CASE ...]
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
BASE_TS = 1_767_225_600 * 10**9          # 2026-01-01 00:00:00 UTC: fixed, so files are stable


@dataclass
class Case:
    name: str
    lab: str
    source: str
    description: str
    frames: Callable                      # (lab) -> list of scapy frames (Ethernet)
    layer: str = "auto"
    rewrite: Callable | list[str] = field(default_factory=list)   # or (lab) -> list
    listen: list[str] = field(default_factory=list)               # "web tcp/80"
    engine: str = "20.10"                 # the profile the expectations are written for


def _mac(lab, node: str) -> str:
    from nettrace.capture.frames import node_address
    return node_address(lab, node).mac


def _ip(lab, node: str) -> str:
    from nettrace.capture.frames import node_address
    return node_address(lab, node).ip


def _bridge_mac(lab, network: str) -> str:
    from nettrace.topology.model import Role
    net = lab.network(network)
    for itf in lab.interfaces:
        if itf.role == Role.BRIDGE and itf.ifname == net.device and itf.netns == net.netns:
            return itf.mac
    raise KeyError(network)


def _host_uplink_mac(lab, host: str) -> str:
    h = lab.hosts[host]
    return lab.interface(h.netns, h.uplink).mac


def _ping(lab, src: str, dst_ip: str, dst_mac: str, seq: int = 1):
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    return (Ether(src=_mac(lab, src), dst=dst_mac)
            / IP(src=_ip(lab, src), dst=dst_ip, id=0x1000 + seq, ttl=64)
            / ICMP(type=8, id=0x4e54, seq=seq) / (b"nettrace-corpus-" + bytes([48 + seq])))


def bridge_ping(lab):
    return [_ping(lab, "c1", _ip(lab, "c2"), _mac(lab, "c2"), 1),
            _ping(lab, "c1", _ip(lab, "c2"), _mac(lab, "c2"), 2)]


def arp(lab):
    from scapy.layers.l2 import ARP, Ether
    mac = _mac(lab, "c1")
    return [Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=mac, psrc=_ip(lab, "c1"), pdst=_ip(lab, "c2"))]


def dns(lab):
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    return [Ether(src=_mac(lab, "c1"), dst="00:00:00:00:00:00")
            / IP(src="127.0.0.1", dst="127.0.0.11", id=0x2001)
            / UDP(sport=40053, dport=53) / DNS(id=0x4e54, rd=1, qd=DNSQR(qname="c2"))]


def published_tcp(lab):
    """The SYN only, to a port nobody listens on: web's kernel answers RST. (With a server,
    the client's kernel resets the SYN-ACK, since it never sent the SYN, and whether that
    reset joins the reply's path is a matter of timing.)"""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    client, host = lab.clients["client"], lab.hosts["host"]
    eth = Ether(src=_mac(lab, "client"), dst=_host_uplink_mac(lab, "host"))
    return [eth / IP(src=client.address, dst=host.address, id=0x3001)
            / TCP(sport=41000, dport=8080, flags="S", seq=1000, window=64240)]


def published_udp(lab):
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    client, host = lab.clients["client"], lab.hosts["host"]
    return [Ether(src=_mac(lab, "client"), dst=_host_uplink_mac(lab, "host"))
            / IP(src=client.address, dst=host.address, id=0x3101)
            / UDP(sport=41053, dport=5353) / DNS(id=7, qd=DNSQR(qname="web"))]


def isolation(lab):
    return [_ping(lab, "c1", _ip(lab, "c3"), _bridge_mac(lab, "front"))]


def icc(lab):
    return [_ping(lab, "c1", _ip(lab, "c2"), _mac(lab, "c2"))]


def internal_egress(lab):
    client = lab.clients["client"]
    return [_ping(lab, "c1", client.address, _bridge_mac(lab, "internal"))]


def internal_no_route(lab):
    client = lab.clients["client"]
    return [_ping(lab, "c1", _ip(lab, "c2"), _mac(lab, "c2"), 1),
            _ping(lab, "c1", client.address, _bridge_mac(lab, "internal"), 2)]


def masquerade(lab):
    client = lab.clients["client"]
    return [_ping(lab, "c1", client.address, _bridge_mac(lab, "bridge"))]


def macvlan_ping(lab):
    return [_ping(lab, "m1", _ip(lab, "m2"), _mac(lab, "m2"))]


def overlay_ping(lab):
    return [_ping(lab, "c1", _ip(lab, "c2@ovnet"), _mac(lab, "c2@ovnet"))]


def _ip6(lab, node: str) -> str:
    return lab.sandboxes[node].ip6() if node in lab.sandboxes else \
        ({**lab.hosts, **lab.clients}[node]).address6


def ping6(lab):
    """ICMPv6 echo c1 -> c2 on the dual-stack bridge (flow label 0x4e54 is its identity)."""
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether
    return [Ether(src=_mac(lab, "c1"), dst=_mac(lab, "c2"))
            / IPv6(src=_ip6(lab, "c1"), dst=_ip6(lab, "c2"), fl=0x4e54, hlim=64)
            / ICMPv6EchoRequest(id=0x4e54, seq=1, data=b"nettrace-corpus-1")]


def published_tcp6(lab):
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    client = lab.clients["client"]
    return [Ether(src=lab.interface(client.netns, "eth0").mac, dst=_host_uplink_mac(lab, "host"))
            / IPv6(src=client.address6, dst=lab.hosts["host"].address6, fl=0x4e55, hlim=64)
            / TCP(sport=41006, dport=8080, flags="S", seq=1000)]


def solicit6(lab):
    """c1 asks who has c2's IPv6 address: a neighbour solicitation to its solicited-node group."""
    from nettrace.inject.fingerprint import Fingerprint
    from nettrace.inject.frames import neighbour_solicitation
    return [neighbour_solicitation(Fingerprint(1, "nd", _ip6(lab, "c1"), _ip6(lab, "c2"),
                                               family=6), _mac(lab, "c1"))]


def foreign_ping(lab):
    """A capture taken elsewhere (10.1.2.x addresses), mapped onto the lab by --rewrite."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    return [Ether(src="52:54:00:aa:bb:05", dst="52:54:00:aa:bb:09")
            / IP(src="10.1.2.5", dst="10.1.2.9", id=0x5001) / ICMP(id=7, seq=1)]


CASES = [
    Case("bridge-ping", "bridge", "c1", "c1 pings c2 on docker0 (two echo requests)",
         bridge_ping),
    Case("arp", "bridge", "c1", "c1 asks who has c2's address (broadcast on docker0)", arp),
    Case("dns-user-bridge", "user-bridges", "c1",
         "c1 asks the embedded DNS server 127.0.0.11 for c2 on a user-defined bridge", dns),
    Case("published-port-tcp", "published-port", "client",
         "external client sends a SYN to the host's published port 8080: DNAT to web:80, "
         "where nothing listens, so web's kernel answers RST, un-NATed back to the client",
         published_tcp),
    Case("published-port-udp", "published-port", "client",
         "external client sends UDP to the host's published port 5353: DNAT to web:53, "
         "where a server is bound (listen: web udp/53) and takes it", published_udp,
         listen=["web udp/53"]),
    Case("isolation-drop", "user-bridges", "c1",
         "c1 (front) pings c3 (back): Docker's network isolation drops it", isolation),
    Case("icc-drop", "icc-off", "c1", "c1 pings c2 on a bridge with icc=false", icc),
    Case("internal-egress-drop", "internal", "c1",
         "c1 on an internal network sends to the outside through the bridge (layer 2: "
         "the container has no default route)", internal_egress, layer="l2",
         rewrite=lambda lab: [f"{_bridge_mac(lab, 'internal')}=@internal"]),
    Case("internal-no-route", "internal", "c1",
         "c1 pings c2, then the outside at layer 3: a container on an internal network has "
         "no route out, so the replay stops at frame 2 with an error", internal_no_route),
    Case("masquerade-egress", "published-port", "c1",
         "c1 pings the external client: MASQUERADE on the way out", masquerade),
    Case("macvlan-ping", "macvlan", "m1", "m1 pings m2 on a macvlan network", macvlan_ping),
    Case("overlay-ping", "overlay", "c1",
         "c1 on host1 pings c2 on host2 across the VXLAN overlay", overlay_ping),
    Case("bridge-ping-rewrite", "bridge", "c1",
         "a foreign capture (10.1.2.5 -> 10.1.2.9) replayed as c1 -> c2", foreign_ping,
         rewrite=["auto", "10.1.2.9=c2"]),
    Case("ipv6-ping", "dual-stack", "c1",
         "c1 pings c2 over IPv6 on a dual-stack user-defined bridge (Docker 29, ip6tables)",
         ping6, engine="29"),
    Case("ipv6-published-port", "dual-stack", "client",
         "external client sends a SYN over IPv6 to the host's published port 8080: NAT66 DNAT "
         "to web's IPv6 address, port 80, where a server listens: SYN-ACK back, un-DNATed",
         published_tcp6, engine="29"),
    Case("ipv6-nd", "dual-stack", "c1",
         "c1 solicits c2's IPv6 address (neighbour discovery, IPv6's ARP), c2 advertises it",
         solicit6, layer="l2", engine="29"),
]


def make(case: Case) -> str:
    from nettrace.capture.check import run_case
    from nettrace.capture.golden import GoldenCase, load_golden
    from nettrace.capture.pcapng import write_pcap
    from nettrace.topology import builder, spec
    from nettrace.topology.model import running_labs
    pcap = os.path.join(HERE, f"{case.name}.pcap")
    golden = os.path.join(HERE, f"{case.name}.paths.yaml")
    lab_spec = spec.load(case.lab)
    lab_spec.engine = dataclasses.replace(lab_spec.engine, version=case.engine)  # as the golden
    reuse = lab_spec.name in running_labs()
    lab = builder.up(lab_spec) if not reuse else None
    try:
        from nettrace.topology.model import load_lab
        live = lab or load_lab(lab_spec.name)
        frames = case.frames(live)
        rewrite = case.rewrite(live) if callable(case.rewrite) else case.rewrite
    finally:
        if lab is not None:
            builder.down(lab.name, quiet=True)
    write_pcap(pcap, ((BASE_TS + i * 1_000_000, bytes(f)) for i, f in enumerate(frames)))
    # the hand-written expectations are kept (and checked by the replay): never generated
    old = load_golden(golden) if os.path.exists(golden) else None
    result = run_case(GoldenCase(golden, pcap, case.lab, case.source, rewrite, case.layer,
                                 2.0, case.description, listen=case.listen,
                                 expect=old.expect if old else [],
                                 engine=old.engine if old else {"version": case.engine}),
                      update=True)
    if result.problems:
        print("\n".join(f"  expect: {p}" for p in result.problems), file=sys.stderr)
    return f"{case.name}: {len(frames)} frames, " + ", ".join(
        (f.request.verdict if f.request else f"error: {f.error}") for f in result.actual)


def main(argv: list[str]) -> int:
    wanted = set(argv)
    unknown = wanted - {c.name for c in CASES}
    if unknown:
        print(f"unknown case(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for case in CASES:
        if not wanted or case.name in wanted:
            print(make(case), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
