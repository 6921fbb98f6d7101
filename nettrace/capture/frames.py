"""From a captured frame to a packet nettrace can inject into a lab.

Captured frames come with one of four link-layer headers. They are reduced to what an
injector needs: an IP packet (sent at layer 3, so the lab's kernel routes it and fills in
the MAC addresses, as it would for a container's own traffic) or an Ethernet frame (ARP
and other non-IP traffic, sent at layer 2). Addresses are then rewritten to the lab's
according to `--rewrite` rules.

`--rewrite` syntax (repeatable):
  OLD=NEW   OLD is an IPv4/IPv6 or MAC address seen in the capture; NEW is a lab node (a
            container, an external client or a Docker host, `NAME` or `NAME@NETWORK` for a
            container on several networks), `@NETWORK` for a network's gateway (bridge),
            or a literal address of the same kind. Mapping an IP to a node also maps the
            MAC address the capture used with that IP.
  auto      the source of the first frame becomes the `--from` endpoint (IP and MAC).
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from nettrace.capture.reader import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6,
                                     LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW,
                                     CaptureError, Frame)
from nettrace.errors import NettraceError
from nettrace.trace.endpoints import NodeAddress, node_address

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806
_VLAN_TYPES = (0x8100, 0x88A8)
_BROADCAST = b"\xff" * 6
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True, slots=True)
class LinkPayload:
    """A frame without its capture-specific link header."""

    layer: str          # "l3": IP packet | "l2": Ethernet frame
    data: bytes
    ether: bytes | None = None      # the whole Ethernet frame, when the capture had one


def link_payload(frame: Frame, file: str) -> LinkPayload:
    """Strip the link-layer header: IP frames become "l3", everything else "l2" Ethernet."""
    lt, data = frame.linktype, frame.data
    if lt in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data or data[0] >> 4 not in (4, 6):
            raise CaptureError(file, "raw IP frame without an IPv4 or IPv6 header", frame=frame.number)
        return LinkPayload("l3", data)
    if lt == LINKTYPE_ETHERNET:
        if len(data) < 14:
            raise CaptureError(file, f"Ethernet frame of {len(data)} bytes is shorter than its "
                                     f"header", frame=frame.number)
        pos, ethertype = 12, struct.unpack("!H", data[12:14])[0]
        while ethertype in _VLAN_TYPES and len(data) >= pos + 6:
            pos += 4
            ethertype = struct.unpack("!H", data[pos:pos + 2])[0]
        if ethertype in (ETH_P_IP, ETH_P_IPV6):
            return LinkPayload("l3", data[pos + 2:], data)
        return LinkPayload("l2", data, data)
    if lt in (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2):
        if lt == LINKTYPE_LINUX_SLL:
            hdr = 16
            if len(data) < hdr:
                raise CaptureError(file, "Linux cooked (SLL) frame shorter than its 16-byte "
                                         "header", frame=frame.number)
            pkttype, _arphrd, addrlen = struct.unpack("!HHH", data[:6])
            addr, proto = data[6:14], struct.unpack("!H", data[14:16])[0]
        else:
            hdr = 20
            if len(data) < hdr:
                raise CaptureError(file, "Linux cooked v2 (SLL2) frame shorter than its 20-byte "
                                         "header", frame=frame.number)
            proto = struct.unpack("!H", data[:2])[0]
            pkttype, addrlen = data[10], data[11]
            addr = data[12:20]
        payload = data[hdr:]
        if proto in (ETH_P_IP, ETH_P_IPV6):
            return LinkPayload("l3", payload)
        src = addr[:6] if addrlen == 6 else b"\x00" * 6
        dst = _BROADCAST if pkttype in (1, 2) else b"\x00" * 6   # broadcast / multicast
        ether = dst + src + struct.pack("!H", proto) + payload
        return LinkPayload("l2", ether, ether)
    from nettrace.capture.reader import unsupported_linktype
    raise unsupported_linktype(file, lt, frame=frame.number)


# -- addresses of the lab: nettrace.trace.endpoints (NodeAddress, node_address) -------------


def _address_kind(text: str) -> str | None:
    if _MAC_RE.match(text):
        return "mac"
    try:
        return f"ipv{ipaddress.ip_address(text).version}"
    except ValueError:
        return None


# -- rewriting ----------------------------------------------------------------------------------
@dataclass
class Rewrite:
    """Address maps applied to every frame; MACs of mapped IPs are learned as frames go by."""

    ip: dict[str, str] = field(default_factory=dict)
    mac: dict[str, str] = field(default_factory=dict)
    ip_to_mac: dict[str, str] = field(default_factory=dict)   # lab IP -> lab MAC, for learning
    auto: NodeAddress | None = None                            # set by `auto`: the --from node

    @property
    def active(self) -> bool:
        return bool(self.ip or self.mac or self.auto)


def parse_rewrites(specs: Sequence[str], lab: "Lab", source: NodeAddress) -> Rewrite:
    """Turn `--rewrite` arguments into maps; errors name the argument."""
    rw = Rewrite()
    for spec in specs:
        if spec == "auto":
            rw.auto = source
            continue
        old, sep, new = spec.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise NettraceError(f"--rewrite {spec}: expected OLD=NEW (e.g. 10.0.0.5=c2 or "
                                f"aa:bb:cc:dd:ee:ff=c2) or 'auto'")
        kind = _address_kind(old)
        if kind is None:
            raise NettraceError(f"--rewrite {spec}: '{old}' is neither an IP nor a MAC address")
        old = old.lower() if kind == "mac" else str(ipaddress.ip_address(old))
        new_kind = _address_kind(new)
        if new_kind is not None:
            if new_kind != kind:
                raise NettraceError(f"--rewrite {spec}: cannot map a {kind} address to a "
                                    f"{new_kind} address")
            (rw.mac if kind == "mac" else rw.ip)[old] = new.lower()
            continue
        try:
            node = node_address(lab, new)
        except NettraceError as exc:
            raise NettraceError(f"--rewrite {spec}: {exc}") from None
        target = node.mac if kind == "mac" else node.ip
        if not target:
            raise NettraceError(f"--rewrite {spec}: {new} has no {kind} address in lab {lab.name}")
        if kind != "mac" and _address_kind(target) != kind:
            raise NettraceError(f"--rewrite {spec}: {new} has no {kind} address ({target})")
        (rw.mac if kind == "mac" else rw.ip)[old] = target
        if kind != "mac" and node.mac:
            rw.ip_to_mac[target] = node.mac
    return rw


#: the header a frame must carry whole to be sent and traced, by ethertype
_HEADERS = {ETH_P_IP: ("IP", 20), ETH_P_IPV6: ("IPv6", 40), ETH_P_ARP: ("ARP", 28)}


def frame_bytes(payload: LinkPayload, layer: str | None = None) -> bytes:
    """The bytes to send for a payload at `layer` (default: the payload's own): its
    Ethernet frame (l2) or its IP packet (l3). ValueError when it has no such layer or
    its network header is cut short (a damaged capture)."""
    if (layer or payload.layer) == "l2":
        if payload.ether is None:
            raise ValueError("no Ethernet header")
        data, off = payload.ether, 14
        ethertype = struct.unpack_from("!H", data, 12)[0]
    elif payload.layer == "l2":
        raise ValueError("not an IP packet")
    else:
        data, off = payload.data, 0
        ethertype = ETH_P_IPV6 if data[0] >> 4 == 6 else ETH_P_IP
    name, need = _HEADERS.get(ethertype, ("", 0))
    if ethertype == ETH_P_IP and len(data) > off:
        need = max(need, (data[off] & 0xF) * 4)
    if len(data) - off < need:
        raise ValueError(f"{name} header cut short ({len(data) - off} of {need} bytes)")
    return data


def to_packet(payload: LinkPayload, layer: str | None = None):
    """The scapy packet for a payload, at `layer` (default: the payload's own), for
    rewriting and for its summary. Scapy is imported here, not at module load."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    data = frame_bytes(payload, layer)
    cls = Ether if (layer or payload.layer) == "l2" else (IP if data[0] >> 4 == 4 else IPv6)
    try:
        return cls(data)
    except struct.error as exc:          # scapy on a header cut short (a damaged capture)
        raise ValueError(f"{cls.__name__} header cut short ({exc})") from None


def apply_rewrite(pkt, rw: Rewrite):
    """Rewrite the addresses of a scapy packet in place; checksums are recomputed if changed."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Ether
    if not rw.active:
        return pkt
    ip_layer = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    arp = pkt.getlayer(ARP)
    src_ip = ip_layer.src if ip_layer is not None else (arp.psrc if arp is not None else None)
    if rw.auto is not None and src_ip and src_ip not in rw.ip and rw.auto.ip:
        rw.ip[src_ip] = rw.auto.ip
        if rw.auto.mac:
            rw.ip_to_mac[rw.auto.ip] = rw.auto.mac
    eth = pkt.getlayer(Ether)
    if eth is not None:
        _learn(rw, eth.src, ip_layer.src if ip_layer is not None else (arp.psrc if arp else None))
        _learn(rw, eth.dst, ip_layer.dst if ip_layer is not None else None)
        eth.src = rw.mac.get(eth.src.lower(), eth.src)
        eth.dst = rw.mac.get(eth.dst.lower(), eth.dst)
    changed = False
    if ip_layer is not None:
        for attr in ("src", "dst"):
            old = getattr(ip_layer, attr)
            new = rw.ip.get(str(old))
            if new and new != old:
                setattr(ip_layer, attr, new)
                changed = True
    if arp is not None:
        _learn(rw, arp.hwsrc, arp.psrc)
        arp.hwsrc = rw.mac.get(arp.hwsrc.lower(), arp.hwsrc)
        if arp.hwdst != "00:00:00:00:00:00":
            arp.hwdst = rw.mac.get(arp.hwdst.lower(), arp.hwdst)
        arp.psrc = rw.ip.get(arp.psrc, arp.psrc)
        arp.pdst = rw.ip.get(arp.pdst, arp.pdst)
    if changed:
        _clear_checksums(ip_layer)
    return pkt.__class__(bytes(pkt.build()))


def _learn(rw: Rewrite, mac: str | None, ip: str | None) -> None:
    """A capture MAC seen with a mapped IP maps to that IP's lab MAC."""
    if not mac or not ip or mac.lower() in rw.mac or mac.lower() == "ff:ff:ff:ff:ff:ff":
        return
    lab_ip = rw.ip.get(str(ip))
    if lab_ip and lab_ip in rw.ip_to_mac:
        rw.mac[mac.lower()] = rw.ip_to_mac[lab_ip]


def _clear_checksums(ip_layer) -> None:
    layer = ip_layer
    while layer is not None and layer.name != "NoPayload":
        for name in ("chksum", "cksum"):
            if name in layer.fields:
                del layer.fields[name]
        layer = layer.payload


def summary(data: bytes, layer: str) -> str:
    """One line a user recognises, scapy's: 'IP / ICMP 10.0.0.1 > 10.0.0.2 echo-request 0'
    for the bytes of a frame sent at `layer`."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    cls = Ether if layer == "l2" else (IPv6 if data and data[0] >> 4 == 6 else IP)
    try:
        return cls(data).summary()
    except Exception:                                   # scapy summaries on odd packets
        return cls.__name__
