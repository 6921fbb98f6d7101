"""Scapy packets for a fingerprint: ICMP echo, UDP, TCP SYN, ARP request, raw bytes."""

from __future__ import annotations

from nettrace.errors import NettraceError
from nettrace.inject.fingerprint import Fingerprint


HEADER_BYTES = {"icmp": 8, "udp": 8, "tcp": 20}           # after the IP header


def min_size(fp: Fingerprint) -> int:
    """The smallest IP packet that carries the fingerprint (headers and marker)."""
    ip_header = 40 if fp.family == 6 else 20
    return ip_header + HEADER_BYTES.get(fp.proto, 0) + len(fp.marker or "")


def build_l3(fp: Fingerprint, size: int | None = None, df: bool = False):
    """The IPv4 packet to send through the kernel's IP stack (raw socket).

    `size` pads the payload so the IP packet is exactly that many bytes (MTU faults);
    `df` sets Don't Fragment, so a router on a smaller-MTU link drops it and answers
    ICMP fragmentation-needed instead of fragmenting it."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.packet import Raw
    if fp.family == 6:
        ip = _ipv6(fp)              # IPv6 routers never fragment: every packet is "DF"
    else:
        ip = IP(src=fp.src, dst=fp.dst, id=fp.ip_id, ttl=64, flags="DF" if df else 0)
    data = fp.marker.encode() if fp.marker else b""
    if size is not None:
        if size < min_size(fp):
            raise NettraceError(f"--size {size} is too small for a {fp.proto} packet with "
                                f"nettrace's marker (at least {min_size(fp)} bytes)")
        data += b"\0" * (size - min_size(fp))
    payload = Raw(data) if data else None
    if fp.proto == "icmp" and fp.family == 6:
        from scapy.layers.inet6 import ICMPv6EchoRequest
        return ip / ICMPv6EchoRequest(id=fp.icmp_id, seq=fp.icmp_seq, data=data)
    if fp.proto == "icmp":
        pkt = ip / ICMP(type=8, id=fp.icmp_id, seq=fp.icmp_seq)
    elif fp.proto == "udp":
        pkt = ip / UDP(sport=fp.sport, dport=fp.dport)
    elif fp.proto == "tcp":
        # SYNs carry no payload on real stacks; the marker goes in, Linux accepts it
        pkt = ip / TCP(sport=fp.sport, dport=fp.dport, flags="S", seq=fp.trace_id, window=64240)
    else:
        raise NettraceError(f"--proto {fp.proto} cannot be sent as an IPv{fp.family} packet")
    return pkt / payload if payload is not None else pkt


def _ipv6(fp: Fingerprint):
    from scapy.layers.inet6 import IPv6
    return IPv6(src=fp.src, dst=fp.dst, fl=fp.flow_label or 0, hlim=64)


def neighbour_solicitation(fp: Fingerprint, src_mac: str):
    """A neighbour solicitation for fp.dst (IPv6's who-has), to its solicited-node group."""
    import ipaddress
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether
    low = int(ipaddress.IPv6Address(fp.dst)) & 0xFFFFFF
    group = ipaddress.IPv6Address((0xFF02 << 112) | (1 << 32) | (0xFF << 24) | low)
    mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[-4:])
    return Ether(src=src_mac, dst=mac) / IPv6(src=fp.src, dst=str(group), hlim=255) / \
        ICMPv6ND_NS(tgt=fp.dst) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)


def build_l2(fp: Fingerprint, src_mac: str, dst_mac: str | None = None,
             size: int | None = None, df: bool = False):
    """An Ethernet frame for the sender's interface (ARP request, or IPv4 with MACs)."""
    from scapy.layers.l2 import ARP, Ether
    if fp.proto == "nd":
        return neighbour_solicitation(fp, src_mac)
    if fp.proto == "arp":
        return Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=src_mac, psrc=fp.src, hwdst="00:00:00:00:00:00", pdst=fp.dst)
    if not dst_mac:
        raise NettraceError("an Ethernet frame needs the next hop's MAC address")
    return Ether(src=src_mac, dst=dst_mac) / build_l3(fp, size=size, df=df)
