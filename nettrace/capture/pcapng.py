"""Write traced paths as pcapng that stock Wireshark and tshark open without plugins.

Each lab device is one Interface Description Block named `sandbox/device`, so Wireshark's
interface column says where a packet was seen. A packet is stored once per hop where it
was seen, with an `opt_comment` that carries the hop: kernel point, hook, verdict, rule,
drop reason. All interfaces are Ethernet: a hop whose bytes start at the IP header (seen
after the link layer was pulled) gets a zeroed Ethernet header, and its comment says so.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, BinaryIO, Iterable

from nettrace.capture.reader import LINKTYPE_ETHERNET
from nettrace.trace.model import Path
from nettrace.views.names import hop_device, hop_owner, owner_name
from nettrace.views.paths import hop_comment

if TYPE_CHECKING:
    from nettrace.topology.model import Lab

_SHB, _IDB, _EPB = 0x0A0D0D0A, 1, 6
_OPT_COMMENT, _IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 1, 2, 3, 9
_EPB_FLAGS, _INBOUND, _OUTBOUND = 2, 1, 2
#: kernel points where a packet enters or leaves a device (Wireshark shows the direction)
_DIRECTION = {"tp:netif_receive_skb": _INBOUND, "tp:netif_rx": _INBOUND, "tc:ingress": _INBOUND,
              "tp:net_dev_queue": _OUTBOUND, "tp:net_dev_start_xmit": _OUTBOUND,
              "tp:net_dev_xmit": _OUTBOUND, "tc:egress": _OUTBOUND}
_SHB_HARDWARE, _SHB_OS, _SHB_USERAPPL = 2, 3, 4
_ETH_IP, _ETH_IPV6 = b"\x08\x00", b"\x86\xdd"
_KNOWN_ETHERTYPES = {b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00", b"\x88\xa8",
                     b"\x88\xcc", b"\x80\x35"}


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _block(btype: int, body: bytes, options: bytes = b"") -> bytes:
    if options:
        options += struct.pack("<HH", 0, 0)
    length = 12 + len(body) + len(options)
    return struct.pack("<II", btype, length) + body + options + struct.pack("<I", length)


def is_l3(frame: bytes) -> bool:
    """True when `frame` starts at an IP header rather than an Ethernet header.

    An IPv4 header is recognised by its checksum; IPv6 by its version nibble when bytes
    12-13 are not an EtherType.
    """
    if len(frame) >= 20 and frame[0] >> 4 == 4 and (frame[0] & 0x0F) >= 5:
        ihl = (frame[0] & 0x0F) * 4
        if len(frame) >= ihl:
            total = sum(struct.unpack(f"!{ihl // 2}H", frame[:ihl]))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            if total == 0xFFFF:
                return True
    if len(frame) >= 40 and frame[0] >> 4 == 6 and frame[12:14] not in _KNOWN_ETHERTYPES:
        return True
    return False


class PcapngWriter:
    """Streaming pcapng writer: interfaces are declared as devices first appear.

    `with PcapngWriter(path, lab=lab) as w: w.write_path(path)`. With a lab, every lab
    device gets its interface block up front, so interface numbers follow the lab.
    """

    def __init__(self, target: str | BinaryIO, *, lab: "Lab | None" = None,
                 application: str = "nettrace"):
        self._own = isinstance(target, str)
        self._f: BinaryIO = open(target, "wb") if self._own else target
        self.lab = lab
        self._interfaces: dict[str, int] = {}
        # hops carry CLOCK_MONOTONIC (bpf_ktime_get_ns); pcapng wants time since the epoch
        self._mono_to_epoch = time.time_ns() - time.monotonic_ns()
        self.packets = 0
        self.paths = 0
        self.skipped_hops = 0          # hops of paths that never had any bytes
        import platform
        from nettrace import __version__
        opts = (_option(_SHB_OS, f"Linux {platform.release()}".encode())
                + _option(_SHB_USERAPPL, f"{application} {__version__}".encode()))
        body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
        self._f.write(_block(_SHB, body, opts))
        if lab is not None:
            for itf in lab.interfaces:
                owner = owner_name(itf.sandbox, itf.host, lab) or "underlay"
                self.interface(f"{owner}/{itf.ifname}", f"{itf.role.value} in {itf.netns}")

    def __enter__(self) -> "PcapngWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    @property
    def interfaces(self) -> list[str]:
        return list(self._interfaces)

    def interface(self, name: str, description: str | None = None) -> int:
        """Interface id for `name` (sandbox/device), writing its block the first time."""
        iid = self._interfaces.get(name)
        if iid is None:
            iid = self._interfaces[name] = len(self._interfaces)
            opts = _option(_IF_NAME, name.encode()) + _option(_IF_TSRESOL, b"\x09")
            if description:
                opts += _option(_IF_DESCRIPTION, description.encode())
            self._f.write(_block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0), opts))
        return iid

    def write_packet(self, iface: int, ts_ns: int, data: bytes, comment: str | None = None,
                     wirelen: int | None = None, direction: int = 0) -> None:
        """One Enhanced Packet Block; `ts_ns` is nanoseconds since the epoch, `direction`
        1 inbound, 2 outbound, 0 unknown."""
        body = struct.pack("<IIIII", iface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data),
                           max(wirelen or 0, len(data)))
        body += data + b"\x00" * (-len(data) % 4)
        opts = _option(_OPT_COMMENT, comment.encode()) if comment else b""
        if direction:
            opts += _option(_EPB_FLAGS, struct.pack("<I", direction))
        self._f.write(_block(_EPB, body, opts))
        self.packets += 1

    def write_path(self, path: Path) -> int:
        """Store the packet at every hop of `path` (and of its reply); returns packets written."""
        written = 0
        for p in (path, path.reply) if path.reply else (path,):
            written += self._write_hops(p)
        self.paths += 1
        return written

    def _write_hops(self, path: Path) -> int:
        hops = path.hops
        first = next((h.frame for h in hops if h.frame), None)
        if first is None:
            self.skipped_hops += len(hops)
            return 0
        last = first
        for i, hop in enumerate(hops, 1):
            reused = not hop.frame
            if hop.frame:
                last = hop.frame
            data = last
            synthetic = is_l3(data)
            if synthetic:
                ethertype = _ETH_IP if data[0] >> 4 == 4 else _ETH_IPV6
                data = b"\x00" * 12 + ethertype + data
            iid = self.interface(f"{hop_owner(hop, self.lab)}/{hop_device(hop)}")
            self.write_packet(iid, hop.ts_ns + self._mono_to_epoch, data,
                              hop_comment(hop, i, len(hops), path, synthetic, reused, self.lab),
                              direction=_DIRECTION.get(hop.point, 0))
        return len(hops)


def write_paths(target: str | BinaryIO, paths: Iterable[Path], lab: "Lab | None" = None) -> int:
    """Write `paths` to a pcapng file (what `nettrace path --pcapng FILE` calls); packets written."""
    with PcapngWriter(target, lab=lab) as w:
        for p in paths:
            w.write_path(p)
        return w.packets


def write_pcap(target: str | BinaryIO, frames: Iterable[tuple[int, bytes]],
               linktype: int = LINKTYPE_ETHERNET) -> int:
    """A classic pcap (nanosecond timestamps) of (ts_ns, bytes) frames: the corpus format."""
    f = open(target, "wb") if isinstance(target, str) else target
    count = 0
    try:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, linktype))
        for ts_ns, data in frames:
            sec, ns = divmod(ts_ns, 1_000_000_000)
            f.write(struct.pack("<IIII", sec, ns, len(data), len(data)) + data)
            count += 1
    finally:
        if isinstance(target, str):
            f.close()
    return count
