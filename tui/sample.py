"""Recorded labs and paths for snapshots, the benchmark and `nettrace tui --sample`.

The labs in `samples/*.json` are what `nettrace lab up` built for the embedded labs
(namespace prefix `ntu`); the paths are written out by hand in the tracer's terms, so
screens can be shown and tested with neither root nor eBPF.
"""

from __future__ import annotations

import json
import os

from nettrace.topology.model import Lab
from nettrace.trace.model import DELIVERED, DROPPED, Hop, NfRule, Packet, Path, Verdict

SAMPLES = os.path.join(os.path.dirname(__file__), "samples")


def sample_lab(name: str) -> Lab:
    with open(os.path.join(SAMPLES, f"{name}.json")) as f:
        return Lab.from_dict(json.load(f))


def _icmp_frame(src_mac: str, dst_mac: str, src: str, dst: str, ttl: int, reply: bool,
                ip_id: int) -> bytes:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    pkt = (Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=ttl, id=ip_id) /
           ICMP(type=0 if reply else 8, id=0x4e54, seq=1) / b"nettrace-7f3a")
    return bytes(pkt)


def _leg(lab: Lab, src: str, dst: str, *, t0: int, reply: bool, ip_id: int) -> list[Hop]:
    """Hops of an ICMP echo from container `src` to `dst` across one host bridge."""
    a, b = lab.sandbox(src), lab.sandbox(dst)
    ea, eb = a.endpoints[0], b.endpoints[0]
    net = lab.network(ea.network, a.host)
    host = lab.hosts[a.host]
    frame = _icmp_frame(ea.mac, eb.mac, ea.ipv4, eb.ipv4, 64, reply, ip_id)
    info = "echo-reply" if reply else "echo-request"

    def pkt() -> Packet:
        return Packet(src=ea.ipv4, dst=eb.ipv4, proto="icmp", sport=0x4e54, dport=1, ttl=64,
                      ip_id=ip_id, length=41, eth_src=ea.mac, eth_dst=eb.mac, info=info)

    fwd = NfRule("ip", "filter", "DOCKER-FORWARD", f"-A DOCKER-FORWARD -i {net.device} -j ACCEPT",
                 verdict="accept")
    return [
        Hop(t0, "tp:net_dev_queue", a.host, a.name, a.netns, ea.ifname, "container",
            family="ipv4", packet=pkt(), frame=frame),
        Hop(t0 + 9_400, "tp:netif_receive_skb", a.host, None, host.netns, ea.host_ifname,
            "veth-host", family="ipv4", packet=pkt(), frame=frame),
        Hop(t0 + 14_100, "nf:FORWARD", a.host, None, host.netns, net.device, "bridge",
            hook="FORWARD", family="ipv4", in_dev=net.device, out_dev=net.device, verdict="accept",
            rule=fwd, packet=pkt()),
        Hop(t0 + 19_800, "tp:net_dev_queue", a.host, None, host.netns, eb.host_ifname, "veth-host",
            family="ipv4", packet=pkt(), frame=frame),
        Hop(t0 + 26_300, "tp:netif_receive_skb", b.host, b.name, b.netns, eb.ifname, "container",
            family="ipv4", packet=pkt(), frame=frame),
    ]


def bridge_ping(lab: Lab, t0: int = 1_000_000_000, ip_id: int = 0x1a2b) -> Path:
    """c1 → c2 on docker0, delivered, with its reply."""
    req = Path(lab.name, "c1", "c2", "icmp", _leg(lab, "c1", "c2", t0=t0, reply=False, ip_id=ip_id),
               Verdict(DELIVERED, where="c2:eth0", reason="to stack", hop_index=4),
               fingerprint={"ip_id": ip_id, "icmp_id": 0x4e54, "seq": 1})
    rep = Path(lab.name, "c2", "c1", "icmp",
               _leg(lab, "c2", "c1", t0=t0 + 61_000, reply=True, ip_id=ip_id + 1),
               Verdict(DELIVERED, where="c1:eth0", reason="to socket", hop_index=4),
               direction="reply")
    req.reply = rep
    return req


def isolation_drop(lab: Lab, t0: int = 2_000_000_000) -> Path:
    """c1 (front) → c3 (back) on user-defined bridges: dropped by DOCKER-ISOLATION-STAGE-2."""
    c1, c3 = lab.sandbox("c1"), lab.sandbox("c3")
    e1, e3 = c1.endpoints[0], c3.endpoints[0]
    front, back = lab.network("front"), lab.network("back")
    host = lab.hosts[c1.host]
    gw_mac = next(i.mac for i in lab.interfaces if i.ifname == front.device)
    frame = _icmp_frame(e1.mac, gw_mac, e1.ipv4, e3.ipv4, 64, False, 0x2c3d)

    def pkt(ttl: int = 64, mac: str | None = gw_mac) -> Packet:
        return Packet(src=e1.ipv4, dst=e3.ipv4, proto="icmp", sport=0x4e54, dport=1, ttl=ttl,
                      ip_id=0x2c3d, length=41, eth_src=e1.mac, eth_dst=mac, info="echo-request")

    rule = NfRule("ip", "filter", "DOCKER-ISOLATION-STAGE-2",
                  f"-A DOCKER-ISOLATION-STAGE-2 -o {back.device} -j DROP", handle=17, verdict="drop")
    hops = [
        Hop(t0, "tp:net_dev_queue", c1.host, "c1", c1.netns, "eth0", "container", family="ipv4",
            packet=pkt(), frame=frame),
        Hop(t0 + 8_700, "tp:netif_receive_skb", c1.host, None, host.netns, e1.host_ifname,
            "veth-host", family="ipv4", packet=pkt(), frame=frame),
        Hop(t0 + 12_000, "tp:netif_receive_skb", c1.host, None, host.netns, front.device, "bridge",
            family="ipv4", packet=pkt(), frame=frame),
        Hop(t0 + 15_500, "nf:PRE_ROUTING", c1.host, None, host.netns, front.device, "bridge",
            hook="PRE_ROUTING", family="ipv4", in_dev=front.device, verdict="accept", packet=pkt()),
        Hop(t0 + 21_900, "nf:FORWARD", c1.host, None, host.netns, front.device, "bridge",
            hook="FORWARD", family="ipv4", in_dev=front.device, out_dev=back.device,
            verdict="drop", rule=rule, packet=pkt(63), changes=["ttl 64 -> 63 (routed)"]),
        Hop(t0 + 23_400, "drop", c1.host, None, host.netns, front.device, "bridge",
            family="ipv4", verdict="drop", drop_reason="NETFILTER_DROP",
            location="nft_do_chain+0x3e8", packet=pkt(63)),
    ]
    return Path(lab.name, "c1", "c3", "icmp", hops,
                Verdict(DROPPED, where=f"host:{front.device}", reason="NETFILTER_DROP", rule=rule,
                        hop_index=4),
                fingerprint={"ip_id": 0x2c3d, "icmp_id": 0x4e54, "seq": 1})


def many_paths(lab: Lab, hops: int) -> list[Path]:
    """At least `hops` recorded hops: bridge pings, each with its reply (10 hops a pair)."""
    paths, total, i = [], 0, 0
    while total < hops:
        p = bridge_ping(lab, t0=1_000_000_000 + i * 1_000_000, ip_id=(i * 2) & 0xFFFF)
        paths.append(p)
        total += len(p.hops) + len(p.reply.hops)
        i += 1
    return paths
