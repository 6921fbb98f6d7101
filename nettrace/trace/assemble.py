"""Assembly: what the probes saw -> the paths a person reads. Pure: no bcc, no pyroute2, no
kernel; the live tracer and offline readers of trace bundles call the same code, so a
path printed live and the same bundle assembled later are equal by construction.

    assemble(events, nft_lines, names, request) -> Path        # one injected packet
    assemble_observed(events, names, lab) -> Path               # one packet seen live

Inputs are numbers and text: `Event`s (netns inode, ifindex, hook, skb, header bytes;
see nettrace.trace.events), the lines `nft monitor trace` printed (`TraceLine`), a
`Names` snapshot (inode/ifindex -> lab names, drop reason codes and code addresses ->
words) and the `Request` that was injected (its fingerprint). For many packets in flight
at once, `Assembler` keeps one `Assembly` per trace id and routes each event by the
trace id the kernel filter put on it; `Assembly` can be fed event by event and asked for
the path so far at any time (the live tracer polls it to know when a path is complete).

Steps, in order:
1. `classify`: each event's headers are the request, its answer, or unknown (then the
   skb pointer decides: headers are unreadable after a free or a pull).
2. `build_hops`: time-ordered events fold into hops: one per device crossed in each
   direction (queue, start-xmit, xmit and tc events of one transmit are one hop), one per
   netfilter hook (first and last probe: seen first but not last means the hook dropped
   or stole it), and the drop/consume events that end the packet; header changes between
   hops (MAC, TTL, NAT, VXLAN) go into `Hop.changes`.
3. `attach_rules`: nft trace lines, parsed into the rule with a verdict per (namespace,
   hook) by `rules_by_hook`, are put on their netfilter hop.
4. `verdict`: delivered (where, to what), dropped (where, why, which rule) or lost.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from nettrace.inject.fingerprint import Fingerprint
from nettrace.trace.events import Event, parse_headers
from nettrace.trace.events import Point as Probe
from nettrace.trace.model import (DELIVERED, DROPPED, LOST, NF_HOOKS, Hop, HookVerdict, NfRule,
                                  Packet, Path, Point, Verdict)
from nettrace.trace.names import Names

TX = {Probe.DEV_QUEUE, Probe.START_XMIT, Probe.DEV_XMIT, Probe.TC_EGRESS}
RX = {Probe.NETIF_RX, Probe.RECEIVE_SKB, Probe.TC_INGRESS}
#: the hop point of each device probe; which one names a merged transmit/receive hop (best first)
DEVICE_POINTS = {Probe.DEV_QUEUE: Point.DEV_QUEUE, Probe.RECEIVE_SKB: Point.RECEIVE_SKB,
                 Probe.NETIF_RX: Point.NETIF_RX, Probe.START_XMIT: Point.START_XMIT,
                 Probe.DEV_XMIT: Point.DEV_XMIT, Probe.TC_INGRESS: Point.TC_INGRESS,
                 Probe.TC_EGRESS: Point.TC_EGRESS}
PREFERENCE = list(DEVICE_POINTS)
REQUEST, REPLY = "request", "reply"
#: where the kernel frees packets that waited for an ARP answer that never came
NEIGH_GAVE_UP = ("neigh_timer_handler", "neigh_invalidate")
#: drops that end a packet which already reached its destination's stack
AFTER_DELIVERY = {"NO_SOCKET": "to stack; no socket was waiting",
                  "NOT_SPECIFIED": "to stack"}
#: iptables-nft base chains -> the netfilter hook they run in
CHAIN_HOOKS = {"PREROUTING": "PRE_ROUTING", "INPUT": "LOCAL_IN", "FORWARD": "FORWARD",
               "OUTPUT": "LOCAL_OUT", "POSTROUTING": "POST_ROUTING",
               # Docker 29's nftables backend (table ip docker-bridges): its base chains
               "raw-PREROUTING": "PRE_ROUTING", "nat-PREROUTING": "PRE_ROUTING",
               "filter-FORWARD": "FORWARD", "nat-OUTPUT": "LOCAL_OUT",
               "nat-POSTROUTING": "POST_ROUTING"}


# -- inputs ----------------------------------------------------------------------------------
@dataclass
class TraceLine:
    """One line `nft monitor trace` printed in a namespace (nettrace.trace.nftrace)."""

    netns: str
    trace_id: str
    family: str
    table: str
    chain: str
    text: str
    ts: float                          # time.monotonic() when read (collection only)

    def to_list(self) -> list:
        return [self.netns, self.trace_id, self.family, self.table, self.chain, self.text, self.ts]

    @classmethod
    def from_list(cls, row: list) -> "TraceLine":
        return cls(*row)


@dataclass
class Request:
    """What was injected, as the assembly needs it: the user's words for SRC and DST, the
    packet's fingerprint, the namespace an ARP request is for, and the sender's own
    refusal (no route) when the packet never left."""

    lab: str
    src: str
    dst: str
    fingerprint: Fingerprint
    dst_netns: str | None = None
    refused: str | None = None

    @property
    def trace_id(self) -> int:
        return self.fingerprint.trace_id

    def to_dict(self) -> dict[str, Any]:
        return {"lab": self.lab, "src": self.src, "dst": self.dst,
                "fingerprint": self.fingerprint.to_dict(), "dst_netns": self.dst_netns,
                "refused": self.refused}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Request":
        return cls(d["lab"], d["src"], d["dst"], Fingerprint(**d["fingerprint"]),
                   d.get("dst_netns"), d.get("refused"))


# -- 1. request or reply ----------------------------------------------------------------------
#: ICMP answers that quote the request (the kernel matched the quoted IPv4 id or flow label)
ICMP_ERRORS = ("dest-unreach", "time-exceeded", "packet-too-big", "param-problem")


def classify(pkt: Packet, fp: Fingerprint) -> str | None:
    """Is this header the injected packet, its answer, or unknown (None)?

    The request is known by its identity (IPv4 id, IPv6 flow label), the answer by what it
    must carry: the echo id, our source port as its destination, or a quoting ICMP error."""
    if fp.proto in ("arp", "nd"):
        return _classify_neighbour(pkt, fp)
    icmp = "ipv6-icmp" if fp.family == 6 else "icmp"
    wanted, ident, own = (icmp, pkt.flow_label, fp.flow_label) if fp.family == 6 else \
        (fp.proto, pkt.ip_id, fp.ip_id)
    if ident is not None and ident == own and pkt.proto == (wanted if fp.proto == "icmp"
                                                            else fp.proto) \
            and not _answer_shaped(pkt, fp):
        return REQUEST
    if fp.proto == "icmp" and pkt.proto == icmp:
        if pkt.info == "echo-reply" and pkt.sport == fp.icmp_id:
            return REPLY
    elif pkt.proto in ("tcp", "udp") and pkt.proto == fp.proto and pkt.dport == fp.sport:
        return REPLY
    if pkt.proto == icmp and pkt.info in ICMP_ERRORS:
        return REPLY
    return None


def _answer_shaped(pkt: Packet, fp: Fingerprint) -> bool:
    """The answer's own IPv4 id (or flow label) is the answerer's to choose, so now and then
    it equals the request's: to an echo request, an echo reply or an ICMP error is the
    answer whatever its id says, and so is a segment to our source port. (A replayed echo
    reply is its own request: it has no answer.)"""
    if fp.proto == "icmp":
        return fp.echo_request and (pkt.info == "echo-reply" or pkt.info in ICMP_ERRORS)
    return pkt.dport == fp.sport and pkt.sport != fp.sport


def _classify_neighbour(pkt: Packet, fp: Fingerprint) -> str | None:
    """ARP who-has / is-at, or IPv6 neighbour solicitation / advertisement, for fp.dst."""
    if pkt.proto not in ("arp", "ipv6-icmp") or not pkt.info:
        return None
    if fp.proto == "nd":
        target = str(ipaddress.IPv6Address(fp.dst))
        return {f"neighbor-solicit {target}": REQUEST,
                f"neighbor-advert {target}": REPLY}.get(pkt.info)
    if pkt.info.startswith("who-has") and pkt.dst == fp.dst:
        return REQUEST
    if "is-at" in pkt.info and pkt.src == fp.dst:
        return REPLY
    return None


def identity(pkt: Packet | None) -> int | None:
    """What nft trace shows of a packet to match it: IPv4 id, or IPv6 flow label."""
    if pkt is None:
        return None
    return pkt.ip_id if pkt.ip_id is not None else pkt.flow_label


class Assembly:
    """The events of one injected packet (one trace id), fed in any order, any time."""

    def __init__(self, names: Names, request: Request) -> None:
        self.names, self.request = names, request
        self.events: list[Event] = []                 # every event fed, for bundles
        self.sides: dict[str, list[tuple[Event, Packet]]] = {REQUEST: [], REPLY: []}
        self._skbs: dict[str, set[int]] = {REQUEST: set(), REPLY: set()}
        # header bytes -> (packet, side, unreadable): one packet's events repeat a few
        # headers (~25 events, ~5 distinct), parsed and classified once each
        self._seen: dict[tuple[bytes, bool, int], tuple[Packet, str | None, bool]] = {}
        self._hops: dict[str, list[Hop]] = {}       # side -> hops, until an event comes

    def add(self, ev: Event) -> None:
        self.events.append(ev)
        key = (ev.hdr, ev.l2, ev.ethertype)
        seen = self._seen.get(key)
        if seen is None:
            pkt = parse_headers(*key)
            seen = self._seen[key] = (pkt, classify(pkt, self.request.fingerprint),
                                      identity(pkt) is None)
        pkt, side, unreadable = seen
        if side is None and unreadable:   # headers unreadable (freed, pulled): by skb
            side = next((s for s in (REPLY, REQUEST) if ev.skb in self._skbs[s]), None)
        # (readable headers that are neither are another packet, even in a reused skb: the
        # sender's RST to an unasked-for SYN-ACK, allocated where the freed SYN was)
        if side is None:
            return
        self._skbs[side].add(ev.skb)
        self.sides[side].append((ev, pkt))
        self._hops.pop(side, None)

    def hops(self, side: str) -> list[Hop]:
        """The side's hops, folded again only when an event came since (the pipeline asks
        once to know if a path is complete, then once more with its nft lines)."""
        hops = self._hops.get(side)
        if hops is None:
            hops = self._hops[side] = build_hops(self.sides[side], self.names,
                                                 reply=side == REPLY)
        return hops

    def path(self, lines: Iterable[TraceLine] = ()) -> Path:
        """The path so far, its reply, and the rules of `lines` on their hooks."""
        req, fp = self.request, self.request.fingerprint
        if req.refused:
            return Path(req.lab, req.src, req.dst, fp.proto, fingerprint=fp.to_dict(),
                        verdict=Verdict(DROPPED, where=req.src, reason=req.refused))
        lines = list(lines)
        req_hops, rep_hops = self.hops(REQUEST), self.hops(REPLY)
        if lines or any(h.rule for h in req_hops + rep_hops):
            attach_rules(req_hops, rules_by_hook(lines, {fp.ip_id if fp.family == 4
                                                         else fp.flow_label}))
            reply_ids = {identity(p) for _, p in self.sides[REPLY] if identity(p) is not None}
            attach_rules(rep_hops, rules_by_hook(lines, reply_ids))
        arp_ns = req.dst_netns if fp.proto in ("arp", "nd") else None
        answer = next((h.packet for h in rep_hops if h.packet and h.packet.proto), None)
        path = Path(req.lab, req.src, req.dst, fp.proto, hops=list(req_hops),
                    verdict=verdict(req_hops, arp_target_ns=arp_ns,
                                    answered=(answer.info or answer.proto) if answer else None),
                    fingerprint=fp.to_dict())
        if rep_hops:
            src_ns = req_hops[0].netns if req_hops else None
            path.reply = Path(req.lab, req.dst, req.src, answer.proto if answer else fp.proto,
                              hops=list(rep_hops),
                              verdict=verdict(rep_hops,
                                              arp_target_ns=src_ns if fp.proto in ("arp", "nd") else None),
                              direction="reply", fingerprint=fp.to_dict())
        return path


class Assembler:
    """Many packets in flight: one `Assembly` per trace id, events routed by their trace id
    (the kernel filter tags each event with the id of the fingerprint it matched)."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.open: dict[int, Assembly] = {}

    def start(self, request: Request) -> Assembly:
        asm = self.open[request.trace_id] = Assembly(self.names, request)
        return asm

    def add(self, ev: Event) -> bool:
        """Route one event; False when no open request has its trace id."""
        asm = self.open.get(ev.trace_id)
        if asm is None:
            return False
        asm.add(ev)
        return True

    def finish(self, trace_id: int, lines: Iterable[TraceLine] = ()) -> tuple[Path, Assembly]:
        asm = self.open.pop(trace_id)
        return asm.path(lines), asm


def assemble(events: Iterable[Event], lines: Iterable[TraceLine], names: Names,
             request: Request) -> Path:
    """The path of one injected packet (and its reply) from what the probes saw."""
    asm = Assembly(names, request)
    for ev in events:
        if ev.trace_id == request.trace_id:
            asm.add(ev)
    return asm.path(lines)


def assemble_observed(events: Iterable[Event], names: Names, lab: str,
                      events_lost: int = 0) -> Path:
    """The path of one packet seen by live tracing (no fingerprint: every event is its)."""
    pairs = [(ev, parse_headers(ev.hdr, ev.l2, ev.ethertype)) for ev in events]
    hops = build_hops(pairs, names)
    pkt = next((p for _, p in pairs if p.src), None)
    return Path(lab, pkt.src if pkt else "?", pkt.dst if pkt else "?",
                pkt.proto if pkt else "?", hops=hops, verdict=verdict(hops),
                direction="observed", events_lost=events_lost)


# -- 2. hops ------------------------------------------------------------------------------
@dataclass
class _HopState:
    hop: Hop
    key: tuple | None = None             # (netns, ifindex, "tx"/"rx") or (netns, pf, hook)
    rank: int = len(PREFERENCE)          # best device probe seen (index in PREFERENCE)
    first_packet: Packet | None = None


#: the hop point of each netfilter hook number; the rank of each device probe; tx or rx
_HOOK_POINTS = tuple(Point.of_hook(h) for h in NF_HOOKS)
_RANK = {p: i for i, p in enumerate(PREFERENCE)}
_DIRECTION = {**{p: "tx" for p in TX}, **{p: "rx" for p in RX}}
_FAMILIES = {0x0806: "arp", 0x86DD: "ipv6"}


def _ts(pair: tuple[Event, Packet]) -> int:
    return pair[0].ts_ns


def _dev_name(names: Names, netns: int, ifindex: int) -> str | None:
    dev = names.device(netns, ifindex)
    return dev.name if dev else (f"if{ifindex}" if ifindex else None)


def build_hops(events: list[tuple[Event, Packet]], names: Names, *,
               reply: bool = False) -> list[Hop]:
    """Fold time-ordered events into hops (see the module docstring)."""
    states: list[_HopState] = []
    open_nf: dict[tuple, _HopState] = {}
    owners: dict[int, tuple[str | None, str | None, str | None]] = {}
    for ev, pkt in sorted(events, key=_ts):
        point, ev_netns = ev.point, ev.netns
        owner = owners.get(ev_netns)
        if owner is None:
            place = names.place(ev_netns)
            owner = owners[ev_netns] = (place.host, place.sandbox, place.netns) if place \
                else (None, None, None)
        host, sandbox, netns = owner
        direction = _DIRECTION.get(point)
        if direction is not None:
            ifindex = ev.ifindex
            key = (ev_netns, ifindex, direction)
            st = None
            for s in states[-4:]:
                if s.key == key:
                    st = s
                    break
            if st is None:
                dev = names.device(ev_netns, ifindex)
                hop = Hop(ev.ts_ns, DEVICE_POINTS[point], host=host,
                          sandbox=(dev.sandbox if dev and dev.sandbox else sandbox), netns=netns,
                          device=dev.name if dev else (f"if{ifindex}" if ifindex else None),
                          role=dev.role if dev else None, packet=pkt, skb=ev.skb, frame=ev.hdr,
                          family=_FAMILIES.get(ev.ethertype, "ipv4"))
                st = _HopState(hop, key)
                states.append(st)
            rank = _RANK[point]
            if rank < st.rank:
                st.rank = rank
                st.hop.point = DEVICE_POINTS[point]
            if ev.l2 and not st.hop.packet.eth_src:
                st.hop.packet, st.hop.frame = pkt, ev.hdr
        elif point is Probe.NF_FIRST or point is Probe.NF_LAST:
            key = (ev_netns, ev.pf, ev.hook)
            if point is Probe.NF_FIRST or key not in open_nf:
                hook_point = _HOOK_POINTS[ev.hook]
                in_dev = _dev_name(names, ev_netns, ev.in_ifindex)
                out_dev = _dev_name(names, ev_netns, ev.out_ifindex)
                dev = names.device(ev_netns, ev.out_ifindex or ev.in_ifindex)
                hop = Hop(ev.ts_ns, hook_point, host=host, sandbox=sandbox, netns=netns,
                          device=out_dev or in_dev, role=dev.role if dev else None,
                          hook=NF_HOOKS[ev.hook], family="ipv6" if ev.pf == 10 else "ipv4",
                          in_dev=in_dev, out_dev=out_dev, packet=pkt, skb=ev.skb, frame=ev.hdr)
                st = _HopState(hop, key, first_packet=pkt)
                states.append(st)
                open_nf[key] = st
            if point is Probe.NF_LAST:
                st = open_nf.pop(key)
                st.hop.verdict = HookVerdict.ACCEPT
                st.hop.packet, st.hop.frame = pkt, ev.hdr
        else:                            # kfree_skb / consume_skb
            drop = point is Probe.KFREE_SKB
            if netns is None and states:     # no device or socket left: where it was last
                last = states[-1].hop
                host, sandbox, netns = last.host, last.sandbox, last.netns
            hop = Hop(ev.ts_ns, Point.DROP if drop else Point.CONSUME, host=host,
                      sandbox=sandbox, netns=netns,
                      device=_dev_name(names, ev_netns, ev.ifindex),
                      drop_reason=names.drop_reason(ev.reason) if drop else None,
                      location=names.location(ev.location), packet=pkt if pkt.src else None,
                      skb=ev.skb)
            states.append(_HopState(hop))
    # a consume followed by more hops freed a copy (neighbour queue, clone), not the packet
    last_live = max((i for i, s in enumerate(states)
                     if s.hop.point not in (Point.CONSUME, Point.DROP)), default=-1)
    states = [s for i, s in enumerate(states)
              if not (s.hop.point == Point.CONSUME and i < last_live)]
    hops = [s.hop for s in states]
    for st in open_nf.values():          # first without last: dropped or stolen in the hook
        later = [h for h in hops if h.ts_ns > st.hop.ts_ns and h.point == Point.DROP]
        st.hop.verdict = (HookVerdict.DROP if later and later[0].drop_reason == "NETFILTER_DROP"
                          else HookVerdict.STOLEN)
    _record_changes(states, reply)
    return hops


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


# -- 3. rules --------------------------------------------------------------------------------
_RULE = re.compile(r"^rule (.*?) \(verdict ([^)]*)\)$")
_IPID = re.compile(r"\b(?:ip id|ip6 flowlabel) (\d+)\b")      # IPv4 id, IPv6 flow label
_HANDLE = re.compile(r"\s*# handle (\d+)$")


def rules_by_hook(lines: Iterable[TraceLine],
                  ip_ids: set[int]) -> dict[tuple[str, str], list[NfRule]]:
    """(namespace, hook) -> rules with a verdict, for the traces of packets with `ip_ids`.

    A trace id is one packet's walk through one namespace; its `packet:` line names the
    IPv4 id. Lines of non-base chains belong to the hook of the base chain that jumped.
    """
    lines = list(lines)
    ours: set[tuple[str, str]] = set()
    for tl in lines:
        if tl.text.startswith("packet:"):
            m = _IPID.search(tl.text)
            if m and int(m.group(1)) in ip_ids:
                ours.add((tl.netns, tl.trace_id))
    out: dict[tuple[str, str], list[NfRule]] = {}
    hook_of: dict[tuple[str, str], str] = {}
    for tl in lines:
        key = (tl.netns, tl.trace_id)
        if key not in ours:
            continue
        if tl.chain in CHAIN_HOOKS:
            hook_of[key] = CHAIN_HOOKS[tl.chain]
        hook = hook_of.get(key)
        if hook is None:
            continue
        rule = _verdict_rule(tl)
        if rule is not None:
            out.setdefault((tl.netns, hook), []).append(rule)
    return out


def _verdict_rule(tl: TraceLine) -> NfRule | None:
    m = _RULE.match(tl.text)
    if m:
        verdict = m.group(2)
        if verdict in ("continue",) or verdict.startswith(("jump", "goto", "return")):
            return None
        text = re.sub(r"counter packets \d+ bytes \d+ ", "", m.group(1))
        h = _HANDLE.search(text)           # `nft -a monitor trace`: "... # handle 12"
        text = _HANDLE.sub("", text)
        return NfRule(tl.family, tl.table, tl.chain, text, int(h.group(1)) if h else None, verdict)
    if tl.text.startswith("policy "):
        return NfRule(tl.family, tl.table, tl.chain, tl.text, None, tl.text.split()[1])
    return None


def attach_rules(hops: list[Hop], rules: dict[tuple[str, str], list[NfRule]]) -> None:
    """Put the nft trace verdict of each (namespace, hook) on its netfilter hop (none
    where `rules` has none: the hops may have had others put on them before)."""
    for hop in hops:
        if not hop.point.is_netfilter or hop.netns is None:
            continue
        found = rules.get((hop.netns, hop.hook or ""), [])
        drops = [r for r in found if r.verdict == "drop"]
        hop.rule = drops[0] if drops else (found[-1] if found else None)


# -- 4. verdicts -----------------------------------------------------------------------------
def verdict(hops: list[Hop], *, arp_target_ns: str | None = None,
            answered: str | None = None) -> Verdict:
    """Decide how the packet's journey ended, from its hops (and the answer's kind:
    echo-reply, SYN-ACK, RST-ACK, dest-unreach... when an answer was seen)."""
    delivered_at: int | None = None
    for i, hop in enumerate(hops):
        if hop.point.is_netfilter and hop.verdict in (HookVerdict.DROP, HookVerdict.STOLEN):
            drop = next((h for h in hops[i + 1:] if h.point == Point.DROP), None)
            reason = drop.drop_reason if drop else hop.verdict.value
            if drop and drop.location:
                reason = f"{reason} at {drop.location}"
            return Verdict(DROPPED, where=f"{hop.place} {hop.hook}", reason=reason,
                           rule=hop.rule, hop_index=i)
        if hop.point == Point.NF_LOCAL_IN and hop.verdict == HookVerdict.ACCEPT and \
                not (hop.packet and hop.packet.outer):       # the VXLAN outer packet: not yet
            delivered_at = i
        if arp_target_ns and hop.netns == arp_target_ns and hop.point.is_receive:
            delivered_at = i if delivered_at is None else delivered_at
        if hop.point == Point.DROP:
            if delivered_at is not None and (hop.skb != hops[delivered_at].skb or (
                    hops[delivered_at].netns == hop.netns and hop.drop_reason in AFTER_DELIVERY)):
                continue                 # a copy dropped after delivery, or no socket waiting
            reason = hop.drop_reason or "dropped"
            if hop.location:
                reason = f"{reason} at {hop.location}"
            prev = next((h for h in reversed(hops[:i]) if h.device), hop)
            return Verdict(DROPPED, where=prev.place, reason=reason, rule=hop.rule, hop_index=i)
    if delivered_at is not None:
        hop = hops[delivered_at]
        tail = [h for h in hops[delivered_at + 1:]
                if h.point == Point.DROP and h.netns == hop.netns]
        reason = f"answered: {answered}" if answered else (
            AFTER_DELIVERY[tail[0].drop_reason] if tail else "to stack")
        where = hop.sandbox or hop.host or hop.netns
        return Verdict(DELIVERED, where=where, reason=reason, hop_index=delivered_at)
    if not hops:
        return Verdict(LOST, reason="no probe saw it (not sent, or outside the lab's namespaces)")
    last = hops[-1]
    if last.point == Point.CONSUME and (last.location or "").startswith(NEIGH_GAVE_UP):
        prev = next((h for h in reversed(hops) if h.device), last)
        return Verdict(DROPPED, where=prev.place, hop_index=len(hops) - 1,
                       reason=f"no ARP answer for the next hop (freed at {last.location})")
    return Verdict(LOST, where=last.place, reason=f"last seen at {last.point}",
                   hop_index=len(hops) - 1)


def device_sequence(path: Path) -> list[str]:
    """Devices crossed, in order, once per crossing: c1:eth0, host:vethX, host:docker0...

    Bridges have no receive event of their own (the bridge runs inside the port's
    receive): they appear through the netfilter hops br_netfilter runs on them.
    """
    out: list[str] = []
    for hop in path.hops:
        bridge_nf = hop.point.is_netfilter and hop.role == "bridge"
        if (hop.point.is_device or bridge_nf) and hop.device:
            if not out or out[-1] != hop.place:
                out.append(hop.place)
    return out


@dataclass
class TraceRecord:
    """Everything one traced injection produced: the unit a trace bundle stores. Its
    `path()` is the path the tracer reported (the tracer returns exactly this)."""

    request: Request
    events: list[Event] = field(default_factory=list)
    lines: list[TraceLine] = field(default_factory=list)
    events_lost: int = 0                  # ring-buffer outputs that failed meanwhile
    probes_missing: list[str] = field(default_factory=list)

    def path(self, names: Names) -> Path:
        path = assemble(self.events, self.lines, names, self.request)
        path.events_lost = self.events_lost
        path.probes_missing = list(self.probes_missing)
        return path
