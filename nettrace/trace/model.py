"""Hops and paths: what the tracer tells a user, as plain data.

Probe events (numbers: netns inode, ifindex, skb pointer) are turned into `Hop`s
named in the lab's terms, and hops of one packet into a `Path` that ends in a
`Verdict`. Views (CLI table, JSON, TUI, pcapng) only read these dataclasses.
This module imports nothing heavy and is the contract between trace, capture,
views and the TUI: add fields, never rename them.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any


#: netfilter hooks by number (NF_INET_*), as BPF netfilter links and probes number them
NF_HOOKS = ("PRE_ROUTING", "LOCAL_IN", "FORWARD", "LOCAL_OUT", "POST_ROUTING")


class Point(StrEnum):
    """Where a hop was seen. A `str` (StrEnum): JSON and old `startswith("nf:")` code read
    the value; new code asks `is_netfilter` / `is_device` / `hook`."""

    DEV_QUEUE = "tp:net_dev_queue"
    START_XMIT = "tp:net_dev_start_xmit"
    DEV_XMIT = "tp:net_dev_xmit"
    NETIF_RX = "tp:netif_rx"
    RECEIVE_SKB = "tp:netif_receive_skb"
    TC_INGRESS = "tc:ingress"
    TC_EGRESS = "tc:egress"
    NF_PRE_ROUTING = "nf:PRE_ROUTING"
    NF_LOCAL_IN = "nf:LOCAL_IN"
    NF_FORWARD = "nf:FORWARD"
    NF_LOCAL_OUT = "nf:LOCAL_OUT"
    NF_POST_ROUTING = "nf:POST_ROUTING"
    DROP = "drop"                     # kfree_skb
    CONSUME = "consume"               # consume_skb: a normal free

    @property
    def is_netfilter(self) -> bool:
        return self.value.startswith("nf:")

    @property
    def is_device(self) -> bool:
        """A device crossing (tracepoint or tc), as opposed to a hook or a free."""
        return self.value.startswith(("tp:", "tc:"))

    @property
    def is_receive(self) -> bool:
        return self in (Point.NETIF_RX, Point.RECEIVE_SKB, Point.TC_INGRESS)

    @property
    def hook(self) -> str | None:
        """PRE_ROUTING | LOCAL_IN | FORWARD | LOCAL_OUT | POST_ROUTING for netfilter points."""
        return self.value[3:] if self.is_netfilter else None

    @classmethod
    def of_hook(cls, hook: str) -> "Point":
        return cls(f"nf:{hook}")


class VerdictKind(StrEnum):
    """How a packet's journey ended."""

    DELIVERED = "delivered"
    DROPPED = "dropped"
    LOST = "lost"


class HookVerdict(StrEnum):
    """What one netfilter hook did with the packet (first and last probe of the hook)."""

    ACCEPT = "accept"
    DROP = "drop"                     # dropped in the hook (a kfree_skb NETFILTER_DROP follows)
    STOLEN = "stolen"                 # seen first, never last, and not freed as a netfilter drop


DELIVERED, DROPPED, LOST = VerdictKind.DELIVERED, VerdictKind.DROPPED, VerdictKind.LOST


@dataclass
class Packet:
    """Header summary of the packet as seen at one hop (after any rewrite so far)."""

    src: str | None = None            # IP source
    dst: str | None = None            # IP destination
    proto: str | None = None          # icmp | udp | tcp | arp | ipv6-icmp | <number>
    sport: int | None = None          # or ICMP id
    dport: int | None = None          # or ICMP seq
    ttl: int | None = None
    ip_id: int | None = None
    length: int | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    info: str | None = None           # "echo-request", "SYN", "who-has 10.0.0.2"
    outer: "Packet | None" = None     # VXLAN outer header when encapsulated
    vni: int | None = None
    flow_label: int | None = None     # IPv6 flow label (the IPv6 request's identity)


@dataclass
class NfRule:
    """A netfilter verdict at rule level (from nft monitor trace)."""

    family: str                       # ip | ip6 | inet | bridge
    table: str
    chain: str
    rule: str | None = None           # rule text as iptables-nft/nft prints it
    handle: int | None = None
    verdict: str | None = None        # accept | drop | jump X | continue | return


@dataclass
class Hop:
    """One place a watched packet was seen."""

    ts_ns: int                        # kernel monotonic clock
    point: Point
    host: str | None = None           # Docker host (simulated) name
    sandbox: str | None = None        # container, overlay sandbox or client name
    netns: str | None = None
    device: str | None = None         # interface name in that namespace
    role: str | None = None           # nettrace.topology.model.Role value
    hook: str | None = None           # PRE_ROUTING | LOCAL_IN | FORWARD | LOCAL_OUT | POST_ROUTING
    family: str | None = None         # ipv4 | ipv6 | arp
    in_dev: str | None = None
    out_dev: str | None = None
    verdict: HookVerdict | None = None
    rule: NfRule | None = None
    drop_reason: str | None = None    # skb_drop_reason name, e.g. NETFILTER_DROP
    location: str | None = None       # symbolized kernel location, nft_do_chain+0x3e8
    packet: Packet | None = None
    changes: list[str] = field(default_factory=list)   # "dst 10.0.0.1:8080 -> 172.17.0.2:80 (DNAT)"
    skb: int | None = None            # kernel skb address: a short-lived hint only
    frame: bytes | None = None        # packet bytes from the L2/L3 header when captured

    def __post_init__(self) -> None:   # hops built by hand may name points by their value
        if type(self.point) is not Point:
            self.point = Point(self.point)
        if self.verdict is not None and type(self.verdict) is not HookVerdict:
            self.verdict = HookVerdict(self.verdict)

    @property
    def place(self) -> str:
        owner = self.sandbox or self.host or "?"
        return f"{owner}:{self.device}" if self.device else owner


@dataclass
class Verdict:
    kind: VerdictKind
    where: str | None = None          # hop.place of the deciding hop
    reason: str | None = None         # drop reason or delivery detail ("to socket", "to stack")
    rule: NfRule | None = None        # the netfilter rule that dropped it, when known
    hop_index: int | None = None

    def __post_init__(self) -> None:
        self.kind = VerdictKind(self.kind)


@dataclass
class Path:
    """The journey of one packet (request or reply), hop by hop."""

    lab: str
    src: str                          # what the user named: container, ip, host:port
    dst: str
    proto: str
    hops: list[Hop] = field(default_factory=list)
    verdict: Verdict = field(default_factory=lambda: Verdict(LOST))
    direction: str = "request"        # request | reply
    reply: "Path | None" = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    events_lost: int = 0              # ring-buffer losses while this path was traced
    probes_missing: list[str] = field(default_factory=list)
    diagnosis: Any = None             # nettrace.diagnosis.Diagnosis: why, and what to do

    def to_dict(self) -> dict[str, Any]:
        diagnosis, self.diagnosis = self.diagnosis, None
        try:
            d = _encode(dataclasses.asdict(self))
        finally:
            self.diagnosis = diagnosis
        d["diagnosis"] = diagnosis.to_dict() if diagnosis is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Path":
        d = dict(d)
        d["hops"] = [_hop_from_dict(h) for h in d.get("hops", [])]
        v = d["verdict"]
        d["verdict"] = Verdict(**{**v, "kind": VerdictKind(v["kind"]), "rule": _rule(v.get("rule"))})
        d["reply"] = cls.from_dict(d["reply"]) if d.get("reply") else None
        if d.get("diagnosis"):
            from nettrace.diagnosis.model import Diagnosis
            d["diagnosis"] = Diagnosis.from_dict(d["diagnosis"])
        return cls(**d)


def _rule(d: dict | None) -> NfRule | None:
    return NfRule(**d) if d else None


def _packet(d: dict | None) -> Packet | None:
    if not d:
        return None
    return Packet(**{**d, "outer": _packet(d.get("outer"))})


def _hop_from_dict(d: dict[str, Any]) -> Hop:
    frame = d.get("frame")
    return Hop(**{**d, "rule": _rule(d.get("rule")), "packet": _packet(d.get("packet")),
                  "frame": base64.b64decode(frame) if frame else None})


def _encode(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    return obj
