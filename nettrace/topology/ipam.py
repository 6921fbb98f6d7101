"""IP address management, as Docker's default IPAM driver does it.

Local-scope networks take /16s from 172.17.0.0/16 (docker0) onwards, then /20s from
192.168.0.0/16; swarm-scope networks take /24s from 10.0.0.0/8 (10.0.0.0/24 is the
ingress network's in Docker, so overlays start at 10.0.1.0/24). The gateway is the first
host address; containers get the next free ones in order. Subnets given in the lab file are
reserved first so automatic ones never overlap them.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network
from typing import Iterator

from nettrace.errors import NettraceError

UNDERLAY = IPv4Network("192.168.50.0/24")


def _local_pools() -> Iterator[IPv4Network]:
    for second in range(18, 32):
        yield IPv4Network(f"172.{second}.0.0/16")
    yield from IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def _global_pools() -> Iterator[IPv4Network]:
    pools = IPv4Network("10.0.0.0/8").subnets(new_prefix=24)
    next(pools)                       # 10.0.0.0/24 belongs to Docker's ingress network
    yield from pools


class Ipam:
    """Subnets per address space (one per host, plus the global one) and addresses per subnet."""

    def __init__(self, reserved: list[str]):
        self.reserved = [IPv4Network(s) for s in reserved] + [UNDERLAY]
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

    def reserve(self, space: str, net: IPv4Network, addr: str) -> IPv4Address:
        ip = IPv4Address(addr)
        taken = self.taken.setdefault((space, net), set())
        if ip in taken:
            raise NettraceError(f"IPAM: address {ip} is already in use on {net}")
        taken.add(ip)
        return ip

    def allocate(self, space: str, net: IPv4Network) -> IPv4Address:
        taken = self.taken.setdefault((space, net), set())
        for ip in net.hosts():
            if ip not in taken:
                taken.add(ip)
                return ip
        raise NettraceError(f"IPAM: no free address left in {net}")


def mac_for(ip: str | IPv4Address) -> str:
    """Docker 20.10's container MAC: 02:42 followed by the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
