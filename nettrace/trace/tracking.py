"""Probe events of one watched packet -> hops, for the request and for its reply.

Events arrive tagged with a trace id by the kernel filter (or grouped by flow in live
mode). Here they are told apart (request or reply: `classify`), ordered, and folded
into hops a person reads: one hop per device crossed in each direction (the queue,
start-xmit, xmit and tc events of one transmit are one hop), one per netfilter hook
(first and last probe: seen first but not last means the hook dropped or stole it),
and the drop/consume events that end the packet. Header changes between hops (MAC,
TTL, NAT, VXLAN encapsulation) are written into `Hop.changes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nettrace.inject.fingerprint import Fingerprint
from nettrace.trace.events import Event, Point, parse_headers
from nettrace.trace.links import NF_HOOKS
from nettrace.trace.model import Hop, Packet
from nettrace.trace.names import Names
from nettrace.trace.symbols import drop_reason, symbolize

TX = {Point.DEV_QUEUE, Point.START_XMIT, Point.DEV_XMIT, Point.TC_EGRESS}
RX = {Point.NETIF_RX, Point.RECEIVE_SKB, Point.TC_INGRESS}
#: which event names a merged transmit/receive hop (best first)
PREFERENCE = [Point.DEV_QUEUE, Point.RECEIVE_SKB, Point.NETIF_RX, Point.START_XMIT,
              Point.DEV_XMIT, Point.TC_INGRESS, Point.TC_EGRESS]
REQUEST, REPLY = "request", "reply"


def classify(pkt: Packet, fp: Fingerprint) -> str | None:
    """Is this header the injected packet, its answer, or unknown (None)?"""
    if fp.proto == "arp":
        if pkt.proto != "arp" or not pkt.info:
            return None
        if pkt.info.startswith("who-has") and pkt.dst == fp.dst:
            return REQUEST
        if "is-at" in pkt.info and pkt.src == fp.dst:
            return REPLY
        return None
    if pkt.ip_id is not None and pkt.ip_id == fp.ip_id and pkt.proto == fp.proto:
        return REQUEST
    if fp.proto == "icmp" and pkt.proto == "icmp":
        if pkt.info == "echo-reply" and pkt.sport == fp.icmp_id:
            return REPLY
    elif pkt.proto in ("tcp", "udp") and pkt.proto == fp.proto and pkt.dport == fp.sport:
        return REPLY
    if pkt.proto == "icmp" and pkt.info in ("dest-unreach", "time-exceeded"):
        return REPLY                     # the kernel matched its quoted IPv4 id
    return None


@dataclass
class _HopState:
    hop: Hop
    key: tuple | None = None             # (netns, ifindex, "tx"/"rx") or (netns, pf, hook)
    points: set = field(default_factory=set)
    first_packet: Packet | None = None


class PacketTrack:
    """Collects the events of one trace id and turns them into request/reply hops."""

    def __init__(self, names: Names, fp: Fingerprint | None) -> None:
        self.names, self.fp = names, fp
        self.events: dict[str, list[tuple[Event, Packet]]] = {REQUEST: [], REPLY: []}
        self._skbs: dict[str, set[int]] = {REQUEST: set(), REPLY: set()}
        self.count = 0

    def add(self, ev: Event) -> None:
        self.count += 1
        pkt = parse_headers(ev.hdr, ev.l2, ev.ethertype)
        side = classify(pkt, self.fp) if self.fp else REQUEST
        if side is None:                 # headers unreadable here (freed, pulled): by skb
            side = next((s for s in (REPLY, REQUEST) if ev.skb in self._skbs[s]), None)
            if side is None:
                return
        self._skbs[side].add(ev.skb)
        self.events[side].append((ev, pkt))

    def hops(self, side: str) -> list[Hop]:
        return build_hops(self.events[side], self.names, reply=side == REPLY)


def _owner(names: Names, ev: Event) -> tuple[str | None, str | None, str | None]:
    place = names.place(ev.netns)
    if place is None:
        return None, None, None
    return place.host, place.sandbox, place.netns


def _dev_name(names: Names, netns: int, ifindex: int) -> str | None:
    dev = names.device(netns, ifindex)
    return dev.name if dev else (f"if{ifindex}" if ifindex else None)


def build_hops(events: list[tuple[Event, Packet]], names: Names, *, reply: bool = False) -> list[Hop]:
    """Fold time-ordered events into hops (see the module docstring)."""
    states: list[_HopState] = []
    open_nf: dict[tuple, _HopState] = {}
    for ev, pkt in sorted(events, key=lambda e: e[0].ts_ns):
        host, sandbox, netns = _owner(names, ev)
        if ev.point in TX or ev.point in RX:
            key = (ev.netns, ev.ifindex, "tx" if ev.point in TX else "rx")
            st = next((s for s in states[-4:] if s.key == key), None)
            if st is None:
                dev = names.device(ev.netns, ev.ifindex)
                hop = Hop(ev.ts_ns, ev.point.label, host=host,
                          sandbox=(dev.sandbox if dev and dev.sandbox else sandbox), netns=netns,
                          device=_dev_name(names, ev.netns, ev.ifindex),
                          role=dev.role if dev else None, packet=pkt, skb=ev.skb, frame=ev.hdr,
                          family=_family(ev))
                st = _HopState(hop, key)
                states.append(st)
            st.points.add(ev.point)
            best = min(st.points, key=PREFERENCE.index)
            st.hop.point = best.label
            if ev.l2 and not st.hop.packet.eth_src:
                st.hop.packet, st.hop.frame = pkt, ev.hdr
        elif ev.point in (Point.NF_FIRST, Point.NF_LAST):
            key = (ev.netns, ev.pf, ev.hook)
            if ev.point == Point.NF_FIRST or key not in open_nf:
                hook = NF_HOOKS[ev.hook] if ev.hook < len(NF_HOOKS) else str(ev.hook)
                in_dev = _dev_name(names, ev.netns, ev.in_ifindex)
                out_dev = _dev_name(names, ev.netns, ev.out_ifindex)
                dev = names.device(ev.netns, ev.out_ifindex or ev.in_ifindex)
                hop = Hop(ev.ts_ns, f"nf:{hook}", host=host, sandbox=sandbox, netns=netns,
                          device=out_dev or in_dev, role=dev.role if dev else None, hook=hook,
                          family="ipv6" if ev.pf == 10 else "ipv4", in_dev=in_dev,
                          out_dev=out_dev, packet=pkt, skb=ev.skb, frame=ev.hdr)
                st = _HopState(hop, key, {ev.point}, pkt)
                states.append(st)
                open_nf[key] = st
            if ev.point == Point.NF_LAST:
                st = open_nf.pop(key)
                st.hop.verdict = "accept"
                st.hop.packet, st.hop.frame = pkt, ev.hdr
        else:                            # kfree_skb / consume_skb
            drop = ev.point == Point.KFREE_SKB
            if netns is None and states:     # no device or socket left: where it was last
                last = states[-1].hop
                host, sandbox, netns = last.host, last.sandbox, last.netns
            hop = Hop(ev.ts_ns, ev.point.label, host=host, sandbox=sandbox, netns=netns,
                      device=_dev_name(names, ev.netns, ev.ifindex),
                      drop_reason=drop_reason(ev.reason) if drop else None,
                      location=symbolize(ev.location), packet=pkt if pkt.src else None,
                      skb=ev.skb)
            states.append(_HopState(hop))
    # a consume followed by more hops freed a copy (neighbour queue, clone), not the packet
    last_live = max((i for i, s in enumerate(states) if s.hop.point not in ("consume", "drop")),
                    default=-1)
    states = [s for i, s in enumerate(states) if not (s.hop.point == "consume" and i < last_live)]
    hops = [s.hop for s in states]
    for st in open_nf.values():          # first without last: dropped or stolen in the hook
        later = [h for h in hops if h.ts_ns > st.hop.ts_ns and h.point == "drop"]
        st.hop.verdict = "drop" if later and later[0].drop_reason == "NETFILTER_DROP" else "stolen"
    _record_changes(states, reply)
    return hops


def _family(ev: Event) -> str:
    return {0x0806: "arp", 0x86DD: "ipv6"}.get(ev.ethertype, "ipv4")


def _endpoint(ip: str | None, port: int | None, proto: str | None) -> str:
    return f"{ip}:{port}" if port is not None and proto in ("tcp", "udp") else str(ip)


def _nat_label(side: str, reply: bool) -> str:
    """NAT on a request rewrites forward; on its reply, conntrack undoes it."""
    if reply:
        return "un-SNAT" if side == "dst" else "un-DNAT"
    return "DNAT" if side == "dst" else "SNAT/MASQUERADE"


def diff_packets(before: Packet, after: Packet, reply: bool = False) -> list[str]:
    """What changed in the headers between two observations of the same packet."""
    out = []
    if before.dst != after.dst or (before.dport != after.dport and after.proto in ("tcp", "udp")):
        if before.dst and after.dst and after.proto != "arp":
            out.append(f"dst {_endpoint(before.dst, before.dport, before.proto)} -> "
                       f"{_endpoint(after.dst, after.dport, after.proto)} ({_nat_label('dst', reply)})")
    if before.src != after.src or (before.sport != after.sport and after.proto in ("tcp", "udp")):
        if before.src and after.src and after.proto != "arp":
            out.append(f"src {_endpoint(before.src, before.sport, before.proto)} -> "
                       f"{_endpoint(after.src, after.sport, after.proto)} ({_nat_label('src', reply)})")
    if before.ttl is not None and after.ttl is not None and before.ttl != after.ttl:
        out.append(f"TTL {before.ttl} -> {after.ttl}")
    if before.outer is None and after.outer is not None:
        o = after.outer
        out.append(f"encapsulated: VXLAN vni {after.vni}, outer {o.src} -> {o.dst} udp/{o.dport}")
    elif before.outer is not None and after.outer is None:
        out.append(f"decapsulated from VXLAN vni {before.vni}")
    return out


def _record_changes(states: list[_HopState], reply: bool) -> None:
    cur: Packet | None = None
    mac: tuple[str, str] | None = None
    for st in states:
        hop = st.hop
        seen = [p for p in (st.first_packet, hop.packet) if p is not None and p.proto]
        for pkt in seen:
            if cur is not None and pkt is not cur:
                hop.changes += [c for c in diff_packets(cur, pkt, reply) if c not in hop.changes]
            cur = pkt
        if hop.packet is not None and hop.packet.eth_src:
            now = (hop.packet.eth_src, hop.packet.eth_dst)
            if mac is not None and now != mac:
                hop.changes.append(f"MAC {mac[0]} > {mac[1]} -> {now[0]} > {now[1]}")
            mac = now
