"""IP address management, as Docker's default IPAM driver does it.

Local-scope networks take /16s from 172.17.0.0/16 (docker0) onwards, then /20s from
192.168.0.0/16; swarm-scope networks take /24s from 10.0.0.0/8 (10.0.0.0/24 is the
ingress network's in Docker, so overlays start at 10.0.1.0/24). The gateway is the first
host address; containers get the next free ones in order. Subnets given in the lab file are
reserved first so automatic ones never overlap them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Iterator

from nettrace.errors import NettraceError

UNDERLAY = IPv4Network("192.168.50.0/24")
#: The underlay's IPv6 prefix when a lab has IPv6 networks (documentation range, RFC 3849).
UNDERLAY6 = IPv6Network("2001:db8:50::/64")


def _local_pools() -> Iterator[IPv4Network]:
    for second in range(18, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def ula_prefix(seed: str) -> IPv6Network:
    """A ULA /48 (fd00::/8 + 40-bit global ID), stable per engine, as Docker derives one from
    its host ID when an IPv6 network is created without a subnet (moby#47853)."""
    gid = hashlib.sha256(f"nettrace/ula/{seed}".encode()).digest()[:5]
    return IPv6Network((b"\xfd" + gid + bytes(10), 48))


def _global_pools() -> Iterator[IPv4Network]:
    pools = IPv4Network("10.0.0.0/8").subnets(new_prefix=24)
    next(pools)                       # 10.0.0.0/24 belongs to Docker's ingress network
    yield from pools


class Ipam:
    """Subnets per address space (one per host, plus the global one) and addresses per subnet."""

    def __init__(self, reserved: list[str]):
        self.reserved = [IPv4Network(s) for s in reserved] + [UNDERLAY]
        self.reserved6: list[IPv6Network] = []              # explicit subnet_v6 of the lab
        self.used: dict[str, list[IPv4Network]] = {}        # address space -> subnets
        self.taken: dict[tuple[str, IPv4Network], set[IPv4Address]] = {}

    def subnet(self, space: str, explicit: str | None, *, swarm: bool = False) -> IPv4Network:
        used = self.used.setdefault(space, [])
        if explicit:
            net = IPv4Network(explicit)
        else:
            pools = _global_pools() if swarm else _local_pools()
            others = used + self.reserved + (self.used.get("global", []) if not swarm else [])
            net = next((p for p in pools if not any(p.overlaps(o) for o in others)), None)
            if net is None:
                raise NettraceError("IPAM: the default address pools are exhausted")
        used.append(net)
        return net

    def subnet6(self, space: str, explicit: str | None, *, seed: str) -> IPv6Network:
        """An IPv6 subnet: the explicit one, or the next free /64 of the space's ULA /48."""
        used = self.used.setdefault(space + "/v6", [])
        if explicit:
            net = IPv6Network(explicit)
        else:
            pools = ula_prefix(seed).subnets(new_prefix=64)
            net = next(p for p in pools if not any(p.overlaps(o) for o in used + self.reserved6))
        used.append(net)
        return net

    def reserve(self, space: str, net, addr: str):
        ip = ipaddress.ip_address(addr)
        taken = self.taken.setdefault((space, net), set())
        if ip in taken:
            raise NettraceError(f"IPAM: address {ip} is already in use on {net}")
        taken.add(ip)
        return ip

    def allocate(self, space: str, net):
        taken = self.taken.setdefault((space, net), set())
        for ip in net.hosts():
            if ip not in taken:
                taken.add(ip)
                return ip
        raise NettraceError(f"IPAM: no free address left in {net}")


def mac_for_v6(*seed: str) -> str:
    """A container MAC on an IPv6-only network (no IPv4 address to derive it from)."""
    h = hashlib.sha1("/".join(("mac",) + seed).encode()).digest()
    return "02:42:" + ":".join(f"{b:02x}" for b in h[:4])


def mac_for(ip: str | IPv4Address) -> str:
    """Docker 20.10's container MAC: 02:42 followed by the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
