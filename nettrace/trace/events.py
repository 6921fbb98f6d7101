"""Probe events as Python data: what one probe saw, numbers only.

The layout is bcc's decoding of `struct nt_event` (bpf/event.h) through the ring
buffer table's `.event()`: no second, hand-kept layout (nettrace.trace.ringbuf copies
each record into that class; `Event` reads its fields on access), and
`parse_headers()` turns the copied header bytes into a `Packet` with a small parser:
scapy would cost ~50 us per event; this costs a few.
"""

from __future__ import annotations

import socket
import struct
from enum import IntEnum

from nettrace.trace.model import Packet


class Point(IntEnum):
    """NT_P_* in bpf/event.h."""

    DEV_QUEUE = 1
    START_XMIT = 2
    DEV_XMIT = 3
    NETIF_RX = 4
    RECEIVE_SKB = 5
    KFREE_SKB = 6
    CONSUME_SKB = 7
    NF_FIRST = 8
    NF_LAST = 9
    TC_INGRESS = 10
    TC_EGRESS = 11


#: raw tracepoints the one `tp_skb` program is attached to, with the point as cookie
TRACEPOINTS = {
    "net_dev_queue": Point.DEV_QUEUE, "net_dev_start_xmit": Point.START_XMIT,
    "net_dev_xmit": Point.DEV_XMIT, "netif_rx": Point.NETIF_RX,
    "netif_receive_skb": Point.RECEIVE_SKB, "kfree_skb": Point.KFREE_SKB,
    "consume_skb": Point.CONSUME_SKB,
}
ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
VXLAN_PORT = 4789
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
ICMP_TYPES = {0: "echo-reply", 8: "echo-request", 3: "dest-unreach", 11: "time-exceeded"}
ICMP6_TYPES = {128: "echo-request", 129: "echo-reply", 1: "dest-unreach", 2: "packet-too-big",
               3: "time-exceeded", 4: "param-problem", 133: "router-solicit",
               134: "router-advert", 135: "neighbor-solicit", 136: "neighbor-advert"}
TCP_FLAGS = "FSRPAUEC"                  # bit 0 .. bit 7


class Event:
    """One probe hit: a private copy of bcc's `struct nt_event`, decoded on access.

    Copying is one memcpy; reading all sixteen fields through ctypes costs ~3 us, which
    is most of what a sustained event stream can afford, so fields are read when used.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw) -> None:
        self._raw = raw                 # a ctypes struct (bcc's), or any object with its fields

    point = property(lambda self: _POINTS[self._raw.point])
    ts_ns = property(lambda self: self._raw.ts_ns)
    skb = property(lambda self: self._raw.skb)
    netns = property(lambda self: self._raw.netns)
    ifindex = property(lambda self: self._raw.ifindex)
    in_ifindex = property(lambda self: self._raw.in_ifindex)
    out_ifindex = property(lambda self: self._raw.out_ifindex)
    trace_id = property(lambda self: self._raw.trace_id)
    reason = property(lambda self: self._raw.reason)
    location = property(lambda self: self._raw.location)
    hook = property(lambda self: self._raw.hook)
    pf = property(lambda self: self._raw.pf)
    l2 = property(lambda self: self._raw.l2 != 0)
    ethertype = property(lambda self: self._raw.ethertype)
    length = property(lambda self: self._raw.len)
    hdr = property(lambda self: bytes(self._raw.hdr)[:self._raw.hdr_len])


_POINTS = [None] + [Point(i) for i in range(1, len(Point) + 1)]   # Point(n) costs ~1 us


def tcp_flags(bits: int) -> str:
    """SYN, SYN-ACK, RST, RST-ACK by name; other combinations as letters (PA, FA...)."""
    named = {0x02: "SYN", 0x12: "SYN-ACK", 0x04: "RST", 0x14: "RST-ACK"}
    return named.get(bits & 0x17) or "".join(c for i, c in enumerate(TCP_FLAGS) if bits >> i & 1)


def _mac(b: bytes) -> str:
    return bytes(b).hex(":")


def parse_headers(hdr: bytes, l2: bool, ethertype: int) -> Packet:
    """Header summary of the copied bytes; VXLAN payloads become `outer` + inner packet."""
    pkt = Packet()
    off = 0
    if l2 and len(hdr) >= 14:
        pkt.eth_dst, pkt.eth_src = _mac(hdr[0:6]), _mac(hdr[6:12])
        ethertype = struct.unpack_from("!H", hdr, 12)[0]
        off = 14
    if ethertype == ETH_P_ARP and len(hdr) >= off + 28:
        op = struct.unpack_from("!H", hdr, off + 6)[0]
        spa, tpa = socket.inet_ntoa(hdr[off + 14:off + 18]), socket.inet_ntoa(hdr[off + 24:off + 28])
        pkt.proto, pkt.src, pkt.dst = "arp", spa, tpa
        pkt.info = f"who-has {tpa} tell {spa}" if op == 1 else f"{spa} is-at {_mac(hdr[off + 8:off + 14])}"
        return pkt
    if ethertype == ETH_P_IPV6 and len(hdr) >= off + 40:
        return _ipv6(pkt, hdr, off)
    if ethertype != ETH_P_IP or len(hdr) < off + 20:
        pkt.proto = f"0x{ethertype:04x}"
        return pkt
    ihl = (hdr[off] & 0xF) * 4
    total, ip_id = struct.unpack_from("!HH", hdr, off + 2)
    pkt.ttl, proto = hdr[off + 8], hdr[off + 9]
    pkt.src, pkt.dst = socket.inet_ntoa(hdr[off + 12:off + 16]), socket.inet_ntoa(hdr[off + 16:off + 20])
    pkt.proto, pkt.ip_id, pkt.length = PROTO_NAMES.get(proto, str(proto)), ip_id, total
    l4 = off + ihl
    if proto in (6, 17) and len(hdr) >= l4 + 4:
        pkt.sport, pkt.dport = struct.unpack_from("!HH", hdr, l4)
        if proto == 6 and len(hdr) >= l4 + 14:
            pkt.info = tcp_flags(hdr[l4 + 13])
        if proto == 17 and pkt.dport == VXLAN_PORT and len(hdr) >= l4 + 16 + 14:
            vni = int.from_bytes(hdr[l4 + 12:l4 + 15], "big")
            inner = parse_headers(hdr[l4 + 16:], True, 0)
            inner.outer = pkt
            inner.vni = vni
            return inner
    elif proto == 1 and len(hdr) >= l4 + 8:
        itype = hdr[l4]
        pkt.info = ICMP_TYPES.get(itype, f"icmp type {itype}")
        if itype in (0, 8):
            pkt.sport, pkt.dport = struct.unpack_from("!HH", hdr, l4 + 4)
    return pkt


def _ipv6(pkt: Packet, hdr: bytes, off: int) -> Packet:
    """IPv6 (no extension headers): addresses, flow label, ports, ICMPv6 type and echo id/seq,
    the target of neighbour discovery."""
    pkt.src = socket.inet_ntop(socket.AF_INET6, hdr[off + 8:off + 24])
    pkt.dst = socket.inet_ntop(socket.AF_INET6, hdr[off + 24:off + 40])
    nh = hdr[off + 6]
    pkt.proto, pkt.ttl = PROTO_NAMES.get(nh, str(nh)), hdr[off + 7]
    pkt.flow_label = int.from_bytes(hdr[off + 1:off + 4], "big") & 0xFFFFF
    pkt.length = struct.unpack_from("!H", hdr, off + 4)[0] + 40
    l4 = off + 40
    if nh in (6, 17) and len(hdr) >= l4 + 4:
        pkt.sport, pkt.dport = struct.unpack_from("!HH", hdr, l4)
        if nh == 6 and len(hdr) >= l4 + 14:
            pkt.info = tcp_flags(hdr[l4 + 13])
    elif nh == 58 and len(hdr) >= l4 + 8:
        itype = hdr[l4]
        pkt.info = ICMP6_TYPES.get(itype, f"icmpv6 type {itype}")
        if itype in (128, 129):
            pkt.sport, pkt.dport = struct.unpack_from("!HH", hdr, l4 + 4)
        elif itype in (135, 136) and len(hdr) >= l4 + 24:
            pkt.info += " " + socket.inet_ntop(socket.AF_INET6, hdr[l4 + 8:l4 + 24])
    return pkt


def marker(hdr: bytes) -> str | None:
    """The `nettrace-<n>` payload marker of an injected packet, when in the copied bytes."""
    i = hdr.find(b"nettrace-")
    if i < 0:
        return None
    j = i + 9
    while j < len(hdr) and 48 <= hdr[j] <= 57:
        j += 1
    return hdr[i:j].decode()
