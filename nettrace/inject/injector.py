"""Send packets from inside a container's (or client's) network namespace.

Two ways in: `send_l3` writes an IPv4 packet to a raw socket opened inside the
namespace, so the kernel routes it, resolves the neighbour and runs LOCAL_OUT and
POST_ROUTING exactly as for the container's own traffic; `send_l2` writes an Ethernet
frame straight onto an interface (ARP, or a frame replayed as captured).
"""

from __future__ import annotations

import errno
import socket

from nettrace.errors import NettraceError
from nettrace.topology import netns


class NoRoute(NettraceError):
    """The sending namespace has no route (or neighbour) for the destination."""


class TooBig(NettraceError):
    """The packet is larger than the MTU of the sender's own outgoing interface."""


class Sender:
    """Sockets opened once per namespace (and interface), for many packets: entering a
    namespace costs ~1 ms, a send through an open socket a few microseconds. A socket
    stays in the namespace it was opened in. `close()` closes them all."""

    def __init__(self) -> None:
        self._l3: dict[tuple[str, int], socket.socket] = {}
        self._l2: dict[tuple[str, str], socket.socket] = {}

    def send_l3(self, ns: str, packet: bytes | object, dst: str | None = None) -> None:
        """Send an IPv4 or IPv6 packet (bytes or a scapy packet) through the IP stack of `ns`.

        IPPROTO_RAW sockets take the packet with its IP header as given (IPv6 too, since
        Linux 4.5), so the IPv4 id or IPv6 flow label that identifies it survives."""
        data = bytes(packet)
        version = data[0] >> 4 if data else 0
        if version == 4 and len(data) >= 20:
            family, dst = socket.AF_INET, dst or socket.inet_ntoa(data[16:20])
        elif version == 6 and len(data) >= 40:
            family, dst = socket.AF_INET6, dst or socket.inet_ntop(socket.AF_INET6, data[24:40])
        else:
            raise NettraceError("only IPv4 and IPv6 packets can be injected at layer 3")
        s = self._l3.get((ns, family))
        if s is None:
            with netns.entered(ns):
                s = self._l3[(ns, family)] = socket.socket(family, socket.SOCK_RAW,
                                                           socket.IPPROTO_RAW)
        try:
            s.sendto(data, (dst, 0))
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                raise NoRoute(f"no route to {dst} in the sender's namespace "
                              f"(sendto: {exc.strerror})") from None
            if exc.errno == errno.EMSGSIZE:
                raise TooBig(f"{len(data)} bytes is larger than the MTU of the sender's "
                             f"interface toward {dst} (sendto: {exc.strerror})") from None
            raise NettraceError(f"sending to {dst} from {ns} failed: {exc.strerror}") from None

    def send_l2(self, ns: str, ifname: str, frame: bytes | object) -> None:
        """Send an Ethernet frame out of interface `ifname` in namespace `ns`."""
        data = bytes(frame)
        s = self._l2.get((ns, ifname))
        try:
            if s is None:
                with netns.entered(ns):
                    # protocol 0: a send-only socket. With ETH_P_ALL it would also queue every
                    # frame it sees (the reply too), and closing it purges that queue: a
                    # spurious drop.
                    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                    try:
                        s.bind((ifname, 0))
                    except OSError:
                        s.close()
                        raise
                self._l2[(ns, ifname)] = s
            s.send(data)
        except OSError as exc:
            raise NettraceError(f"sending a frame on {ifname} in {ns} failed: "
                                f"{exc.strerror}") from None

    def close(self) -> None:
        for s in [*self._l3.values(), *self._l2.values()]:
            s.close()
        self._l3.clear()
        self._l2.clear()

    def __enter__(self) -> "Sender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def send_l3(ns: str, packet: bytes | object, dst: str | None = None) -> None:
    """Send one IPv4 or IPv6 packet (bytes or a scapy packet) through the IP stack of `ns`."""
    with Sender() as sender:
        sender.send_l3(ns, packet, dst)


def send_l2(ns: str, ifname: str, frame: bytes | object) -> None:
    """Send one Ethernet frame out of interface `ifname` in namespace `ns`."""
    with Sender() as sender:
        sender.send_l2(ns, ifname, frame)


def interface_mac(ns: str, ifname: str) -> str:
    """MAC address of an interface inside `ns` (an ioctl: /sys shows the root namespace)."""
    import fcntl
    import struct
    SIOCGIFHWADDR = 0x8927
    with netns.entered(ns):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                info = fcntl.ioctl(s, SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
            except OSError:
                raise NettraceError(f"no interface {ifname} in {ns}") from None
    return ":".join(f"{b:02x}" for b in info[18:24])


def neighbour_mac(ns: str, ip: str, who: str) -> str:
    """The MAC the kernel of `ns` would use for `ip`, from its neighbour table (one ping
    fills it when it has none); `who` names the sender in the error."""
    for attempt in range(2):
        if attempt:
            netns.run(ns, ["ping", "-c1", "-W1", ip], check=False)
        parts = (netns.run(ns, ["ip", "neigh", "show", ip], check=False).stdout or "").split()
        if "lladdr" in parts:
            return parts[parts.index("lladdr") + 1]
    raise NettraceError(f"no MAC address known for {ip} from {who}")
