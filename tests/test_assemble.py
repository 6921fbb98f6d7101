"""The pure assembly (nettrace.trace.assemble): no kernel, no root, no bcc. Events are
built by hand over the fields of struct nt_event, the way the kernel would emit them."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from types import SimpleNamespace

from nettrace.inject.fingerprint import Fingerprint
from nettrace.trace.assemble import (Assembler, Assembly, Request, TraceLine, TraceRecord,
                                     assemble, assemble_observed)
from nettrace.trace.events import Event
from nettrace.trace.events import Point as Probe
from nettrace.trace.model import HookVerdict, Path, Point, VerdictKind
from nettrace.trace.names import Device, Names, Place

C1, HOST, C2 = 11, 12, 13                # netns inodes


def _ipv4(src, dst, proto, ip_id, l4, ttl=64):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ip_id, 0, ttl, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + l4


def _echo(type_, ident, seq):
    return struct.pack("!BBHHH", type_, 0, 0, ident, seq)


def _ev(ts, point, netns, ifindex=0, hdr=b"", trace_id=1, **kw):
    raw = dict(ts_ns=ts, point=int(point), skb=0x100 + trace_id, netns=netns, ifindex=ifindex,
               in_ifindex=0, out_ifindex=0, trace_id=trace_id, reason=0, location=0, hook=0,
               pf=2, l2=0, ethertype=0x0800, len=len(hdr), hdr=hdr, hdr_len=len(hdr))
    raw.update(kw)
    return Event(SimpleNamespace(**raw))


NAMES = Names({C1: Place("ns.c1", "host", "c1"), HOST: Place("ns.host", "host"),
               C2: Place("ns.c2", "host", "c2")},
              {(C1, 2): Device("eth0", "container"), (HOST, 3): Device("veth1", "veth-host"),
               (HOST, 4): Device("docker0", "bridge"), (HOST, 5): Device("veth2", "veth-host"),
               (C2, 2): Device("eth0", "container")},
              reasons={5: "NETFILTER_DROP"}, locations={0xffff1: "nft_do_chain+0x46f"})


def _ping_events(trace_id: int, ip_id: int, icmp_id: int, t0: int, drop: bool = False):
    """c1 -> c2 across docker0; with `drop`, FORWARD drops it (first probe, no last)."""
    req = _ipv4("172.17.0.2", "172.17.0.3", 1, ip_id, _echo(8, icmp_id, 1))
    rep = _ipv4("172.17.0.3", "172.17.0.2", 1, 999, _echo(0, icmp_id, 1))
    fwd = dict(hook=2, in_ifindex=4, out_ifindex=4)
    evs = [_ev(t0 + 1, Probe.DEV_QUEUE, C1, 2, req, trace_id),
           _ev(t0 + 2, Probe.RECEIVE_SKB, HOST, 3, req, trace_id),
           _ev(t0 + 3, Probe.NF_FIRST, HOST, 0, req, trace_id, **fwd)]
    if drop:
        return evs + [_ev(t0 + 4, Probe.KFREE_SKB, HOST, 4, req, trace_id, reason=5,
                          location=0xffff1)]
    return evs + [
        _ev(t0 + 4, Probe.NF_LAST, HOST, 0, req, trace_id, **fwd),
        _ev(t0 + 5, Probe.DEV_QUEUE, HOST, 5, req, trace_id),
        _ev(t0 + 6, Probe.RECEIVE_SKB, C2, 2, req, trace_id),
        _ev(t0 + 7, Probe.NF_FIRST, C2, 0, req, trace_id, hook=1, in_ifindex=2),
        _ev(t0 + 8, Probe.NF_LAST, C2, 0, req, trace_id, hook=1, in_ifindex=2),
        _ev(t0 + 9, Probe.DEV_QUEUE, C2, 2, rep, trace_id),
        _ev(t0 + 10, Probe.RECEIVE_SKB, C1, 2, rep, trace_id),
        _ev(t0 + 11, Probe.NF_FIRST, C1, 0, rep, trace_id, hook=1),
        _ev(t0 + 12, Probe.NF_LAST, C1, 0, rep, trace_id, hook=1)]


def _req(trace_id, ip_id, icmp_id):
    return Request("lab", "c1", "c2", Fingerprint(trace_id, "icmp", "172.17.0.2", "172.17.0.3",
                                                  ip_id=ip_id, icmp_id=icmp_id, icmp_seq=1))


def test_assembly_imports_nothing_of_the_kernel():
    code = ("import sys, nettrace.trace.assemble; print(sorted(m for m in sys.modules if "
            "m.split('.')[0] in ('bcc', 'pyroute2', 'scapy', 'ctypes') or m in "
            "('nettrace.topology.netns', 'nettrace.trace.links', 'nettrace.trace.symbols')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_points_and_verdicts_are_str_enums():
    path = assemble(_ping_events(1, 4242, 99, 1000), [], NAMES, _req(1, 4242, 99))
    assert all(isinstance(h.point, Point) for h in path.hops)
    assert path.hops[2].point is Point.NF_FORWARD and path.hops[2].point.startswith("nf:")
    assert path.hops[2].point.hook == "FORWARD" and path.hops[2].verdict is HookVerdict.ACCEPT
    assert path.verdict.kind is VerdictKind.DELIVERED and path.verdict.kind == "delivered"
    doc = json.loads(json.dumps(path.to_dict()))
    assert doc["hops"][2]["point"] == "nf:FORWARD" and doc["verdict"]["kind"] == "delivered"
    back = Path.from_dict(doc)
    assert back.hops[2].point is Point.NF_FORWARD and back == path


def test_request_reply_verdicts_and_device_names():
    path = assemble(_ping_events(1, 4242, 99, 1000), [], NAMES, _req(1, 4242, 99))
    assert [h.place for h in path.hops] == ["c1:eth0", "host:veth1", "host:docker0",
                                            "host:veth2", "c2:eth0", "c2:eth0"]
    assert path.verdict.where == "c2" and path.verdict.reason == "answered: echo-reply"
    assert path.reply is not None and path.reply.verdict.where == "c1"
    assert [h.point for h in path.reply.hops] == [Point.DEV_QUEUE, Point.RECEIVE_SKB,
                                                  Point.NF_LOCAL_IN]


def test_interleaved_packets_are_told_apart_by_trace_id():
    """Two packets in flight at once (a pipelined replay): the assembler routes each event
    by its trace id, and each path equals the path of its packet traced alone."""
    a, b = _ping_events(1, 4242, 99, 1000), _ping_events(2, 4343, 98, 1000, drop=True)
    mixed = [ev for pair in zip(a, b) for ev in pair] + a[len(b):]
    asm = Assembler(NAMES)
    asm.start(_req(1, 4242, 99))
    asm.start(_req(2, 4343, 98))
    assert all(asm.add(ev) for ev in mixed)
    assert not asm.add(_ev(1, Probe.DEV_QUEUE, C1, 2, trace_id=3))   # nobody's
    line = [TraceLine("ns.host", "t1", "ip", "filter", "FORWARD", "packet: ip id 4343", 0.0),
            TraceLine("ns.host", "t1", "ip", "filter", "DOCKER-ISOLATION-STAGE-2",
                      'rule oifname "docker0" counter packets 1 bytes 84 drop (verdict drop)',
                      0.0)]
    pa, _ = asm.finish(1, line)
    pb, _ = asm.finish(2, line)
    assert pa == assemble(a, [], NAMES, _req(1, 4242, 99))
    assert pb == assemble(b, line, NAMES, _req(2, 4343, 98))
    assert pb.verdict.kind == "dropped" and pb.verdict.where == "host:docker0 FORWARD"
    assert pb.verdict.reason == "NETFILTER_DROP at nft_do_chain+0x46f"
    assert pb.verdict.rule.chain == "DOCKER-ISOLATION-STAGE-2" and pa.hops[2].rule is None


def test_incremental_assembly_equals_the_whole():
    evs = _ping_events(1, 4242, 99, 1000)
    asm = Assembly(NAMES, _req(1, 4242, 99))
    kinds = []
    for ev in reversed(evs):                 # any order: hops are ordered by kernel time
        asm.add(ev)
        kinds.append(asm.path().verdict.kind)
    assert kinds[0] == "lost" and asm.path() == assemble(evs, [], NAMES, _req(1, 4242, 99))


def test_refused_and_unseen_packets():
    req = _req(1, 1, 1)
    req.refused = "no route to 10.9.9.9 from c1"
    rec = TraceRecord(req, events_lost=3, probes_missing=["tc:ingress/egress"])
    path = rec.path(NAMES)
    assert (path.verdict.kind, path.verdict.where, path.verdict.reason) == (
        "dropped", "c1", "no route to 10.9.9.9 from c1")
    assert path.events_lost == 3 and path.probes_missing == ["tc:ingress/egress"]
    assert assemble([], [], NAMES, _req(1, 1, 1)).verdict.kind == "lost"


def test_names_without_a_resolver_use_the_snapshot_only():
    names = Names.from_dict(json.loads(json.dumps(NAMES.to_dict())))
    assert names == NAMES
    assert names.drop_reason(5) == "NETFILTER_DROP" and names.drop_reason(77) == "reason 77"
    assert names.location(0xffff1) == "nft_do_chain+0x46f" and names.location(0x1) is None


def test_observed_packet_without_a_fingerprint():
    path = assemble_observed(_ping_events(1, 4242, 99, 1000, drop=True), NAMES, "lab", 2)
    assert (path.src, path.dst, path.direction, path.events_lost) == (
        "172.17.0.2", "172.17.0.3", "observed", 2)
    assert path.verdict.kind == "dropped"


def test_fingerprint_of_leaves_the_callers_packet_alone():
    from scapy.layers.inet import ICMP, IP
    from nettrace.trace.tracer import fingerprint_of
    from nettrace.trace.tracer import with_identity
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=0) / ICMP(id=5, seq=1)
    before = bytes(pkt)
    fp = fingerprint_of(before, "l3", 42)
    assert bytes(pkt) == before and pkt[IP].id == 0
    assert fp.ip_id == (42 * 7919) % 0xFFFE + 1 and (fp.icmp_id, fp.icmp_seq) == (5, 1)
    sent = IP(with_identity(before, "l3", fp))
    assert sent.id == fp.ip_id and bytes(pkt) == before
    # the header checksum fits the new id: scapy's own checksum of the same header
    assert sent.chksum == IP(bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=fp.ip_id)
                                  / ICMP(id=5, seq=1))).chksum
    assert fingerprint_of(bytes(IP(dst="10.0.0.2", id=77) / ICMP()), "l3", 1).ip_id == 77


def test_fingerprint_of_bytes_for_every_kind_of_frame():
    """Replays fingerprint the bytes they send (no scapy per frame). Expectations written by
    hand from each packet; scapy only builds the bytes."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.vxlan import VXLAN
    from nettrace.trace.tracer import fingerprint_of
    a, b = "10.0.0.1", "10.0.0.2"
    cases = [
        ("l3", IP(src=a, dst=b, id=9) / ICMP(id=5, seq=1) / b"nettrace-77",
         dict(proto="icmp", ip_id=9, icmp_id=5, icmp_seq=1, icmp_type=8, marker="nettrace-77")),
        ("l3", IP(src=a, dst=b, id=9) / ICMP(type=3, code=3) / IP(dst="1.1.1.1") / UDP(),
         dict(proto="icmp", ip_id=9, icmp_type=3)),            # an error: no echo id
        ("l3", IP(src=a, dst=b, id=9) / TCP(sport=1234, dport=80),
         dict(proto="tcp", ip_id=9, sport=1234, dport=80)),
        ("l3", IP(src=a, dst=b, id=9) / UDP(sport=1234, dport=53),
         dict(proto="udp", ip_id=9, sport=1234, dport=53)),
        ("l3", IP(src=a, dst=b, id=9, proto=47) / b"gre!", dict(proto="47", ip_id=9)),
        ("l2", Ether() / IP(src=a, dst=b, id=3, options=[b"\x01"] * 4) / ICMP(id=5, seq=2),
         dict(proto="icmp", ip_id=3, icmp_id=5, icmp_seq=2, icmp_type=8)),   # IP options
        ("l2", Ether() / ARP(psrc=a, pdst=b), dict(proto="arp")),
        ("l2", Ether() / IP(src="192.168.0.1", dst="192.168.0.2", id=44) / UDP(dport=4789)
         / VXLAN(vni=5) / Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP(sport=7, dport=8),
         dict(proto="tcp", src="192.168.0.1", dst="192.168.0.2", ip_id=44, sport=7, dport=8)),
    ]
    for layer, pkt, want in cases:
        fp = fingerprint_of(bytes(pkt), layer, 42)
        want = {"trace_id": 42, "src": a, "dst": b, "family": 4, **want}
        assert fp.to_dict() == want, (pkt.summary(), fp)
    six = [(IPv6(src="fd00::1", dst="fd00::2", fl=7) / ICMPv6EchoRequest(id=3, seq=4),
            dict(proto="icmp", flow_label=7, icmp_id=3, icmp_seq=4, icmp_type=128)),
           (IPv6(src="fd00::1", dst="fd00::2", fl=8) / UDP(sport=5, dport=53),
            dict(proto="udp", flow_label=8, sport=5, dport=53)),
           (IPv6(src="fd00::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fd00::2"),
            dict(proto="nd"))]                 # watched by its target, not its destination
    for pkt, want in six:
        fp = fingerprint_of(bytes(pkt), "l3", 42)
        assert fp.to_dict() == {"trace_id": 42, "src": "fd00::1", "dst": "fd00::2",
                                "family": 6, **want}, pkt.summary()
    import pytest
    from nettrace.errors import NettraceError
    with pytest.raises(NettraceError, match="only IPv4, IPv6 and ARP"):
        fingerprint_of(bytes(Ether(type=0x88CC) / (b"lldp" * 10)), "l2", 1)
