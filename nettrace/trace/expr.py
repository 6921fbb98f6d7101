"""The tcpdump-like expressions `nettrace trace LAB [EXPR]` understands, for the kernel filter.

Supported: primitives joined by `and` (or juxtaposed): `icmp`, `udp`, `tcp`, `arp`,
`host A`, `src A` / `src host A`, `dst A` / `dst host A`, `port N`, with A an IPv4
address or a container name of the lab. Not supported (a clear error says so): `or`,
`not`, parentheses, `net`, `portrange`, IPv6 addresses, `ether`, `vlan`, byte offsets.
IPv6 packets are traced only by an empty expression.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

from nettrace.errors import NettraceError

PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "arp": 0x0806}
UNSUPPORTED = {"or", "not", "!", "(", ")", "net", "portrange", "ether", "vlan", "ip6", "less",
               "greater", "broadcast", "multicast", "||", "&&"}


@dataclass
class LiveFilter:
    proto: int = 0
    port: int = 0
    host: int = 0
    src: int = 0
    dst: int = 0

    def kernel_args(self) -> dict[str, int]:
        return vars(self).copy()


def parse(expr: str | None, resolve: Callable[[str], str | None] | None = None) -> LiveFilter:
    """Parse `expr`; `resolve(name)` maps a container name to its IPv4 address."""
    flt = LiveFilter()
    words = (expr or "").replace("(", " ( ").replace(")", " ) ").split()
    i = 0

    def addr(word: str) -> int:
        ip = resolve(word) if resolve else None
        try:
            return int(ipaddress.IPv4Address(ip or word))
        except ValueError:
            raise NettraceError(f"expression {expr!r}: {word!r} is neither an IPv4 address "
                                f"nor a container of this lab") from None

    def value(j: int) -> str:
        if j >= len(words):
            raise NettraceError(f"expression {expr!r}: '{words[j - 1]}' needs a value")
        return words[j]

    while i < len(words):
        w = words[i].lower()
        if w in UNSUPPORTED:
            raise NettraceError(f"expression {expr!r}: '{w}' is not supported; nettrace's "
                                f"kernel filter understands icmp|udp|tcp|arp, host A, src A, "
                                f"dst A and port N joined by 'and'")
        if w == "and":
            if i == 0 or words[i - 1].lower() == "and" or i == len(words) - 1:
                where = ("the expression starts with it" if i == 0 else
                         "the expression ends with it" if i == len(words) - 1
                         else "the expression has it twice in a row")
                raise NettraceError(f"expression {expr!r}: 'and' must join two primitives; "
                                    f"{where}")
            i += 1
        elif w in PROTOS:
            if flt.proto and flt.proto != PROTOS[w]:
                raise NettraceError(f"expression {expr!r}: two protocols can never both match")
            flt.proto = PROTOS[w]
            i += 1
        elif w in ("host", "src", "dst"):
            j = i + 1
            if w in ("src", "dst") and j < len(words) and words[j] == "host":
                j += 1
            setattr(flt, w, addr(value(j)))
            i = j + 1
        elif w == "port":
            try:
                flt.port = int(value(i + 1))
                if not 0 < flt.port < 65536:
                    raise ValueError
            except ValueError:
                raise NettraceError(f"expression {expr!r}: port must be 1-65535") from None
            i += 2
        else:
            raise NettraceError(f"expression {expr!r}: unknown word '{words[i]}' (supported: "
                                f"icmp udp tcp arp, host A, src A, dst A, port N, and)")
    return flt
