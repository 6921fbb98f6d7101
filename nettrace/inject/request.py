"""What to inject: one typed request, the same for `nettrace path`, the TUI's inject form and
`Tracer.path`. It is checked once, against the lab, by
`nettrace.trace.endpoints.resolve_request`; a bad field raises `RequestError` naming it
(`field` is the name below; the CLI shows it as an option or argument, the TUI as a label).

Pure: no scapy, pyroute2 or kernel import.
"""

from __future__ import annotations

from dataclasses import dataclass

from nettrace.errors import NettraceError

PROTOCOLS = ("icmp", "udp", "tcp", "arp", "nd")
LAYERS = ("l3", "l2")
MAX_COUNT = 1000
MIN_SIZE, MAX_SIZE = 28, 65535        # an IPv4 header and an ICMP echo header; the IP maximum


@dataclass(frozen=True)
class InjectRequest:
    """Inject `count` packets from SRC to DST in a lab (and trace each, with its reply).

    src, dst: as the user names them (container, client, host, IP, HOST:PORT, [IPv6]:PORT).
    proto: one of PROTOCOLS; None is tcp when DST has a port, else icmp.
    dport: the destination port (tcp and udp only); DST's own :PORT when None.
    size: the IP packet's length in bytes (padded), None for the smallest; df: Don't Fragment.
    family: 4 or 6 resolves names to that family's addresses (None: IPv4 where DST has it,
    else IPv6; an IPv6 DST or proto nd implies 6).
    layer: "l3" sends through SRC's IP stack, "l2" a raw Ethernet frame on its interface
    (arp and nd are always l2).
    """

    src: str
    dst: str
    proto: str | None = None
    dport: int | None = None
    count: int = 1
    size: int | None = None
    df: bool = False
    family: int | None = None
    layer: str = "l3"

    def describe(self) -> str:
        port = f":{self.dport}" if self.dport else ""
        return f"{self.src} → {self.dst}{port} {self.proto or 'icmp'} ×{self.count}"


class RequestError(NettraceError):
    """A field of an InjectRequest that cannot be sent; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
