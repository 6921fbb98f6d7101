"""What identifies one injected packet, and its answer, at every hop.

NAT rewrites addresses and ports, VXLAN wraps the packet, clones change the skb
pointer: the identity must survive all of them. The request is known by its IPv4 id
(NAT leaves it alone) plus a `nettrace-<n>` payload marker; its answer by what the
answer must carry: the ICMP echo id and sequence, our source port as destination
port, or the quoted IPv4 id of an ICMP error. `keys()` are the entries the kernel
filter looks up (bpf/hops.c, NT_K_*).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, fields
from typing import Any

K_IPID, K_PORT, K_ICMP, K_ARP, K_FLOW, K_ND = 1, 2, 3, 4, 5, 6
PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}
PROTO_NUMBERS6 = {"icmp": 58, "tcp": 6, "udp": 17}          # IPv6 next header
PROTOS = ("icmp", "udp", "tcp", "arp", "nd", "raw")
#: IPv6 kinds: packets of these are looked at by the IPv6 branch of the kernel filter
IPV6_KINDS = (K_FLOW, K_ND)


def family_of(*addresses: str | None) -> int:
    """4 or 6: the IP version of the first address given."""
    for a in addresses:
        if a:
            return ipaddress.ip_address(a).version
    return 4


#: the ICMP type of an echo request, per family
ECHO_REQUEST = {4: 8, 6: 128}


@dataclass(frozen=True)
class Fingerprint:
    trace_id: int
    proto: str                       # icmp | udp | tcp | arp | raw
    src: str | None                  # IPv4 source as sent
    dst: str | None                  # IPv4 destination as sent
    ip_id: int | None = None
    sport: int | None = None         # TCP/UDP source port
    dport: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    marker: str | None = None        # payload marker, "nettrace-<trace id>"
    family: int = 4                  # 4 | 6
    flow_label: int | None = None    # IPv6: the request's identity (what ip_id is to IPv4)
    icmp_type: int | None = None     # the request's ICMP type (8 / 128: echo request)

    @property
    def echo_request(self) -> bool:
        """An ICMP echo request (a fingerprint recorded without its ICMP type was one):
        the only ICMP packet that is answered."""
        return self.proto == "icmp" and self.icmp_type in (None, ECHO_REQUEST[self.family])

    def keys(self) -> list[tuple[int, int, int]]:
        """(kind, proto, value) entries of the in-kernel watch map."""
        if self.family == 6:
            return self._keys6()
        if self.proto == "arp":
            return [(K_ARP, 0, int(ipaddress.IPv4Address(self.dst)))]
        num = PROTO_NUMBERS.get(self.proto)
        keys = []
        if num is not None and self.ip_id is not None:
            keys.append((K_IPID, num, self.ip_id))
        if self.proto == "icmp" and self.icmp_id is not None:
            keys.append((K_ICMP, 1, (self.icmp_id << 16) | (self.icmp_seq or 0)))
        if self.proto in ("tcp", "udp") and self.sport:
            keys.append((K_PORT, num, self.sport))
        return keys

    def _keys6(self) -> list[tuple[int, int, int]]:
        if self.proto == "nd":           # solicitation and advertisement both carry the target
            return [(K_ND, 0, int(ipaddress.IPv6Address(self.dst)) & 0xFFFFFFFF)]
        num = PROTO_NUMBERS6.get(self.proto)
        keys = []
        if num is not None and self.flow_label is not None:
            keys.append((K_FLOW, num, self.flow_label))
        if self.proto == "icmp" and self.icmp_id is not None:
            keys.append((K_ICMP, 58, (self.icmp_id << 16) | (self.icmp_seq or 0)))
        if self.proto in ("tcp", "udp") and self.sport:
            keys.append((K_PORT, num, self.sport))
        return keys

    def to_dict(self) -> dict[str, Any]:
        # (not dataclasses.asdict: it deep-copies, and every path asks for this twice)
        return {f.name: v for f in _FIELDS if (v := getattr(self, f.name)) is not None}


_FIELDS = fields(Fingerprint)


class FingerprintFactory:
    """Fresh, unlikely-to-collide identities: random IPv4 ids, ICMP ids and high ports."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._next = self._rng.randrange(1, 1 << 20)

    def trace_id(self) -> int:
        self._next += 1
        return self._next

    def new(self, proto: str, src: str | None, dst: str | None, dport: int | None = None,
            seq: int = 1) -> Fingerprint:
        tid = self.trace_id()
        rng = self._rng
        common = dict(trace_id=tid, proto=proto, src=src, dst=dst, marker=f"nettrace-{tid}")
        if family_of(dst, src) == 6:
            return self._new6(common, proto, dport, seq)
        if proto == "arp":
            return Fingerprint(**{**common, "marker": None})
        ip_id = rng.randrange(1, 0xFFFF)
        if proto == "icmp":
            return Fingerprint(**common, ip_id=ip_id, icmp_id=rng.randrange(1, 0xFFFF), icmp_seq=seq,
                               icmp_type=ECHO_REQUEST[4])
        if proto in ("tcp", "udp"):
            return Fingerprint(**common, ip_id=ip_id, sport=rng.randrange(33000, 60999),
                               dport=dport or (80 if proto == "tcp" else 53))
        return Fingerprint(**common, ip_id=ip_id)

    def _new6(self, common: dict, proto: str, dport: int | None, seq: int) -> Fingerprint:
        """IPv6: a random flow label is the identity; neighbour discovery replaces ARP."""
        from nettrace.errors import NettraceError
        rng = self._rng
        if proto == "arp":
            raise NettraceError("ARP is IPv4 only; IPv6 resolves neighbours with neighbour "
                                "discovery: use --proto nd")
        common = {**common, "family": 6}
        if proto == "nd":
            return Fingerprint(**{**common, "marker": None})
        flow = rng.randrange(1, 1 << 20)
        if proto == "icmp":
            return Fingerprint(**common, flow_label=flow, icmp_id=rng.randrange(1, 0xFFFF),
                               icmp_seq=seq, icmp_type=ECHO_REQUEST[6])
        if proto in ("tcp", "udp"):
            return Fingerprint(**common, flow_label=flow, sport=rng.randrange(33000, 60999),
                               dport=dport or (80 if proto == "tcp" else 53))
        return Fingerprint(**common, flow_label=flow)
