"""Tracing logic without a kernel: expressions, fingerprints, header parsing, hop folding,
verdicts, nft trace parsing, views. Fast, no root; the root tests are test_trace_labs.py."""

from __future__ import annotations

import struct

import pytest

from nettrace.errors import NettraceError
from nettrace.inject.fingerprint import K_ARP, K_ICMP, K_IPID, K_PORT, Fingerprint
from nettrace.trace import expr
from nettrace.trace.events import Event, Point, marker, parse_headers, tcp_flags
from nettrace.trace.model import Path
from nettrace.trace.names import Device, Names, Place
from nettrace.trace.assemble import Assembly, Request, TraceLine, classify, rules_by_hook, verdict
from nettrace.trace.nftrace import NfTrace


def ipv4(src: str, dst: str, proto: int, ip_id: int, l4: bytes, ttl: int = 64) -> bytes:
    import socket
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ip_id, 0, ttl, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + l4


def eth(payload: bytes, ethertype: int = 0x0800, src: str = "02:42:ac:11:00:02",
        dst: str = "02:42:ac:11:00:03") -> bytes:
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))   # noqa: E731
    return mac(dst) + mac(src) + struct.pack("!H", ethertype) + payload


def icmp_echo(type_: int, ident: int, seq: int) -> bytes:
    return struct.pack("!BBHHH", type_, 0, 0, ident, seq) + b"nettrace-77"


FP = Fingerprint(77, "icmp", "172.17.0.2", "172.17.0.3", ip_id=4242, icmp_id=99, icmp_seq=1,
                 marker="nettrace-77")


def test_expression_subset_and_refusals():
    f = expr.parse("icmp and host 10.0.0.1")
    assert f.proto == 1 and f.host == 0x0A000001 and not f.port
    f = expr.parse("tcp port 80 and dst host web", resolve={"web": "172.17.0.2"}.get)
    assert (f.proto, f.port, f.dst) == (6, 80, 0xAC110002)
    assert expr.parse(None) == expr.LiveFilter()
    for bad, word in (("icmp or udp", "'or'"), ("not arp", "'not'"), ("net 10.0.0.0/8", "'net'"),
                      ("port 99999", "1-65535"), ("host nosuch", "nosuch"), ("icmp and udp", "two"),
                      ("foo", "unknown word")):
        with pytest.raises(NettraceError, match=word):
            expr.parse(bad)


def test_fingerprint_keys_survive_nat_and_catch_the_answer():
    assert set(FP.keys()) == {(K_IPID, 1, 4242), (K_ICMP, 1, (99 << 16) | 1)}
    tcp = Fingerprint(5, "tcp", "a", "b", ip_id=7, sport=40000, dport=80)
    assert set(tcp.keys()) == {(K_IPID, 6, 7), (K_PORT, 6, 40000)}
    arp = Fingerprint(6, "arp", "10.0.0.1", "10.0.0.2")
    assert arp.keys() == [(K_ARP, 0, 0x0A000002)]


def test_parse_headers_ipv4_vxlan_arp_and_marker():
    frame = eth(ipv4("172.17.0.2", "172.17.0.3", 1, 4242, icmp_echo(8, 99, 1)))
    pkt = parse_headers(frame, True, 0)
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ip_id, pkt.info, pkt.sport, pkt.dport) == \
        ("172.17.0.2", "172.17.0.3", "icmp", 4242, "echo-request", 99, 1)
    assert pkt.eth_src == "02:42:ac:11:00:02" and marker(frame) == "nettrace-77"
    udp = struct.pack("!HHHH", 51000, 4789, 0, 0) + b"\x08\x00\x00\x00\x00\x10\x00\x00" + frame
    outer = parse_headers(ipv4("192.168.50.11", "192.168.50.12", 17, 1, udp), False, 0x0800)
    assert outer.src == "172.17.0.2" and outer.vni == 4096
    assert (outer.outer.src, outer.outer.dport) == ("192.168.50.11", 4789)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + b"\x02" * 6 + bytes([10, 0, 0, 1]) + \
        b"\x00" * 6 + bytes([10, 0, 0, 2])
    assert parse_headers(eth(arp, 0x0806), True, 0).info == "who-has 10.0.0.2 tell 10.0.0.1"
    assert (tcp_flags(0x02), tcp_flags(0x12), tcp_flags(0x14), tcp_flags(0x18)) == \
        ("SYN", "SYN-ACK", "RST-ACK", "PA")


def test_classify_request_reply_and_errors():
    req = parse_headers(ipv4("172.17.0.2", "172.17.0.3", 1, 4242, icmp_echo(8, 99, 1)), False, 0x800)
    rep = parse_headers(ipv4("172.17.0.3", "172.17.0.2", 1, 555, icmp_echo(0, 99, 1)), False, 0x800)
    other = parse_headers(ipv4("172.17.0.3", "172.17.0.2", 1, 556, icmp_echo(0, 98, 1)), False, 0x800)
    assert (classify(req, FP), classify(rep, FP), classify(other, FP)) == ("request", "reply", None)


def test_an_answer_that_happens_to_carry_the_request_id_is_still_the_answer():
    """The answerer picks its own IPv4 id; 1 in 65,534 echo replies carries the request's.
    Classified as the request, the reply's hops once made a c1 -> c2 echo end 'delivered at
    c1' with no reply (a CI run of the fault catalogue)."""
    from dataclasses import replace
    echo = replace(FP, icmp_type=8)              # nettrace's own echo request
    rep = parse_headers(ipv4("172.17.0.3", "172.17.0.2", 1, 4242, icmp_echo(0, 99, 1)), False, 0x800)
    err = parse_headers(ipv4("172.17.0.1", "172.17.0.2", 1, 4242,
                             struct.pack("!BBHI", 3, 3, 0, 0) + b"\x00" * 28), False, 0x800)
    assert (classify(rep, echo), classify(err, echo)) == ("reply", "reply")
    # a replayed echo reply (a capture of both directions) is the packet we sent
    assert classify(rep, replace(FP, icmp_type=0)) == "request"
    from scapy.layers.inet import ICMP, IP
    from nettrace.trace.tracer import fingerprint_of
    assert [fingerprint_of(bytes(IP(dst="172.17.0.3") / ICMP(type=t)), "l3", 5).icmp_type
            for t in (8, 0)] == [8, 0]
    tfp = Fingerprint(78, "tcp", "172.17.0.2", "172.17.0.3", ip_id=4242, sport=40001, dport=80)
    syn = struct.pack("!HHIIBBHHH", 40001, 80, 1, 0, 0x50, 0x02, 64240, 0, 0)
    synack = struct.pack("!HHIIBBHHH", 80, 40001, 9, 2, 0x50, 0x12, 64240, 0, 0)
    got = [classify(parse_headers(ipv4(a, b, 6, 4242, seg), False, 0x800), tfp)
           for a, b, seg in (("172.17.0.2", "172.17.0.3", syn), ("172.17.0.3", "172.17.0.2", synack))]
    assert got == ["request", "reply"]


def _ev(ts, point, netns=1, ifindex=2, hdr=b"", l2=False, **kw):
    """An Event over the fields of struct nt_event (bpf/event.h), as bcc decodes them."""
    from types import SimpleNamespace
    raw = dict(ts_ns=ts, point=int(point), skb=0xAB, netns=netns, ifindex=ifindex, in_ifindex=0,
               out_ifindex=0, trace_id=77, reason=0, location=0, hook=0, pf=2, l2=int(l2),
               ethertype=0x0800, len=len(hdr), hdr=hdr, hdr_len=len(hdr))
    raw.update(kw)
    return Event(SimpleNamespace(**raw))


def test_hops_fold_transmit_events_and_see_a_hook_drop():
    names = Names({1: Place("ns.c1", "host", "c1"), 2: Place("ns.host", "host")},
                  {(1, 2): Device("eth0", "container"), (2, 5): Device("docker0", "bridge")},
                  reasons={5: "NETFILTER_DROP"}, locations={1: "nft_do_chain+0x46f"})
    l3 = ipv4("172.17.0.2", "172.17.0.3", 1, 4242, icmp_echo(8, 99, 1))
    track = Assembly(names, Request("lab", "c1", "c2", FP))
    for ev in (_ev(1, Point.TC_EGRESS, hdr=eth(l3), l2=True),
               _ev(2, Point.DEV_QUEUE, hdr=eth(l3), l2=True),
               _ev(3, Point.START_XMIT, hdr=eth(l3), l2=True),
               _ev(5, Point.NF_FIRST, netns=2, hdr=l3, hook=2, in_ifindex=5, out_ifindex=5),
               _ev(6, Point.KFREE_SKB, netns=2, ifindex=5, hdr=l3, reason=5, location=1)):
        track.add(ev)
    hops = track.hops("request")
    assert [h.point for h in hops] == ["tp:net_dev_queue", "nf:FORWARD", "drop"]
    assert hops[0].place == "c1:eth0" and hops[1].verdict == "drop"
    v = verdict(hops)
    assert v.kind == "dropped" and v.where == "host:docker0 FORWARD"
    assert v.reason == "NETFILTER_DROP at nft_do_chain+0x46f"


def test_nft_trace_lines_give_rule_per_hook():
    lines = [TraceLine("ns.h", "a1", "ip", "filter", "FORWARD", t, 0.0) for t in (
        'packet: iif "br-1" oif "br-2" ip saddr 10.10.0.2 ip daddr 10.20.0.2 ip id 4242 ip ttl 63',
        "rule counter packets 0 bytes 0 jump DOCKER-ISOLATION-STAGE-1 (verdict jump "
        "DOCKER-ISOLATION-STAGE-1)")]
    lines += [TraceLine("ns.h", "a1", "ip", "filter", "DOCKER-ISOLATION-STAGE-2",
                        'rule oifname "br-2" counter packets 1 bytes 84 drop (verdict drop)', 0.0),
              TraceLine("ns.h", "b2", "ip", "filter", "FORWARD", "packet: ip id 9 ", 0.0),
              TraceLine("ns.h", "b2", "ip", "filter", "FORWARD", "policy drop", 0.0)]
    rules = rules_by_hook(lines, {4242})
    (rule,) = rules[("ns.h", "FORWARD")]
    assert (rule.chain, rule.rule, rule.verdict) == ("DOCKER-ISOLATION-STAGE-2", 'oifname "br-2" drop',
                                                     "drop")
    assert rules_by_hook(lines, {9})[("ns.h", "FORWARD")][0].verdict == "drop"
    assert NfTrace.elements_for(FP) == [("ids", 4242), ("echo", 99)]


def test_views_render_and_json_round_trip():
    import io
    import json
    from rich.console import Console
    from nettrace.views import paths as views
    from nettrace.trace.model import Hop, Packet, Verdict
    hop = Hop(10, "nf:PRE_ROUTING", host="host", device="eth0", hook="PRE_ROUTING",
              verdict="accept", packet=Packet(src="1.2.3.4", dst="5.6.7.8", proto="tcp", sport=1,
                                              dport=80, info="SYN", outer=Packet(src="a", dst="b")),
              changes=["dst 5.6.7.8:8080 -> 172.17.0.2:80 (DNAT)"])
    p = Path("lab", "client", "host:8080", "tcp", hops=[hop],
             verdict=Verdict("delivered", where="web", reason="answered", hop_index=0))
    out = io.StringIO()
    views.render(Console(file=out, width=200), p)
    text = out.getvalue()
    assert "[vxlan None: a > b]" in text and "(DNAT)" in text and "request delivered at web" in text
    back = Path.from_dict(json.loads(views.to_json_lines([p])))
    assert back.hops[0].packet.outer.src == "a" and back.verdict.kind == "delivered"


def test_slim_vmlinux_keeps_by_value_closure():
    from nettrace.trace.bcc_headers import slim_vmlinux
    full = ("#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
            "#pragma clang attribute push\n#endif\n\n"
            "typedef unsigned int u32;\n\n"
            "struct inner {\n\tu32 x;\n};\n\n"
            "struct unused {\n\tint y;\n};\n\n"
            "enum color {\n\tRED = 0,\n\tBLUE = 1,\n};\n\n"
            "struct sk_buff {\n\tstruct inner in;\n\tstruct unused *p;\n\tenum color c;\n};\n\n"
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif\n")
    slim = slim_vmlinux(full, {"BLUE"})
    assert "struct inner {" in slim and "struct sk_buff {" in slim and "enum color {" in slim
    assert "struct unused {" not in slim and "struct unused;" in slim
    assert slim.index("struct inner {") < slim.index("struct sk_buff {")


def test_tracer_refuses_clearly_without_root(monkeypatch):
    from nettrace.errors import EnvironmentProblem
    from nettrace.topology.model import Lab
    from nettrace.trace import Tracer
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root"):
        with Tracer(Lab(name="x")):
            pass


def test_verdict_names_a_failed_neighbour_resolution():
    from nettrace.trace.model import Hop
    hops = [Hop(1, "nf:POST_ROUTING", sandbox="c1", device="eth0", hook="POST_ROUTING",
                verdict="accept"),
            Hop(2, "consume", sandbox="c1", device="eth0", location="__neigh_event_send+0x236"),
            Hop(3, "consume", sandbox="c1", device="eth0", location="neigh_timer_handler+0x84")]
    v = verdict(hops)
    assert v.kind == "dropped" and v.where == "c1:eth0" and "no ARP answer" in v.reason
    assert verdict(hops[:2]).kind == "lost"          # still waiting for the answer


def test_a_delivered_echo_reply_or_icmp_error_expects_no_answer():
    """A replayed echo reply is complete once delivered; an echo request waits for its reply."""
    from dataclasses import replace
    from nettrace.trace.model import DELIVERED, Verdict
    from nettrace.trace.pipeline import complete
    delivered = Path("lab", "c1", "c2", "icmp", verdict=Verdict(DELIVERED, where="c2"))
    assert complete(delivered, replace(FP, icmp_type=0))
    assert complete(delivered, replace(FP, icmp_type=3))
    assert not complete(delivered, replace(FP, icmp_type=8))


def test_another_packet_in_a_reused_skb_is_not_the_request():
    """The kernel reuses a freed skb's memory: c1's RST to a SYN-ACK it never asked for was
    once allocated where the SYN had been, joined the SYN's path by skb address and hid its
    consume hop (a CI run). Only an event whose headers cannot be read goes by skb."""
    names = Names({1: Place("ns.c1", "host", "c1")}, {(1, 2): Device("eth0", "container")})
    fp = Fingerprint(78, "tcp", "172.17.0.2", "172.17.0.3", ip_id=4242, sport=40001, dport=80)
    syn = struct.pack("!HHIIBBHHH", 40001, 80, 1, 0, 0x50, 0x02, 64240, 0, 0)
    rst = struct.pack("!HHIIBBHHH", 40001, 80, 2, 0, 0x50, 0x04, 0, 0, 0)
    track = Assembly(names, Request("lab", "c1", "c2", fp))
    track.add(_ev(1, Point.DEV_QUEUE, hdr=ipv4("172.17.0.2", "172.17.0.3", 6, 4242, syn)))
    track.add(_ev(2, Point.DEV_QUEUE, hdr=ipv4("172.17.0.2", "172.17.0.3", 6, 0, rst)))
    track.add(_ev(3, Point.CONSUME_SKB, hdr=b""))          # headers gone: by skb, still ours
    assert [ev.ts_ns for ev, _ in track.sides["request"]] == [1, 3]
    assert track.sides["reply"] == []
