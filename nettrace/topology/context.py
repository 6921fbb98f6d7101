"""What drivers build with: the build context (the lab so far, one netlink socket per
namespace, IPAM) and the naming and address helpers every driver shares.

The builder creates a `BuildContext` and hands it, with the drivers, to each step; drivers
import this module, never the builder (so builder -> drivers -> context, no cycle).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Callable

from nettrace.errors import NettraceError
from nettrace.topology import netns
from nettrace.topology.ipam import Ipam
from nettrace.topology.model import Interface, Lab, Network, Scope, ns_name
from nettrace.topology.spec import LabSpec, NetworkSpec

Progress = Callable[[str], None]


def net_id(lab: str, network: str) -> str:
    """A stable 64-hex network id, as Docker shows them (br-<first 12>)."""
    return hashlib.sha256(f"nettrace/{lab}/{network}".encode()).hexdigest()


def short_hash(*parts: str, n: int = 7) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:n]


def random_mac(*seed: str) -> str:
    """02:42 + 4 bytes: Docker's bridge MAC layout, stable for a given lab."""
    h = hashlib.sha1("/".join(seed).encode()).digest()
    return "02:42:" + ":".join(f"{b:02x}" for b in h[:4])


@dataclass
class BuildContext:
    """What drivers need while building: the lab so far, netlink sockets, IPAM."""

    lab: Lab
    spec: LabSpec
    ipam: Ipam
    progress: Progress
    driver_state: dict = field(default_factory=dict)   # per-build scratch space of drivers
    _sockets: dict = field(default_factory=dict)

    def ipr(self, ns: str):
        """The netlink socket living in namespace `ns` (one per namespace, reused)."""
        sock = self._sockets.get(ns)
        if sock is None:
            sock = self._sockets[ns] = netns.iproute(ns)
        return sock

    def new_netns(self, *parts: str) -> str:
        name = ns_name(self.lab.name, *parts)
        netns.create(name)
        self.lab.namespaces.append(name)
        if any(n.ipv6 for n in self.spec.networks):
            # no duplicate address detection on the lab's interfaces: a link-local address
            # still tentative cannot send the first neighbour solicitation a forwarded packet
            # needs (a real host's bridges are long past DAD when traffic comes)
            with netns.entered(name):
                for conf in ("all", "default"):
                    with open(f"/proc/sys/net/ipv6/conf/{conf}/accept_dad", "w") as f:
                        f.write("0")
        return name

    def record(self, itf: Interface) -> Interface:
        self.lab.interfaces.append(itf)
        return itf

    def index(self, ns: str, ifname: str) -> int:
        """ifindex by name with one RTM_GETLINK (no dump: hosts have hundreds of veths)."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            return self.ipr(ns).link("get", ifname=ifname)[0]["index"]
        except NetlinkError:
            raise NettraceError(f"interface {ifname} not found in {ns}") from None

    def bridge_index(self, ns: str, bridge: str) -> int:
        key = ("bridge-index", ns, bridge)
        if key not in self.driver_state:
            self.driver_state[key] = self.index(ns, bridge)
        return self.driver_state[key]

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()




def _reserve(ctx: BuildContext, spec: NetworkSpec, host: str | None, space: str, net,
             gateway: str | None, attr: str) -> str:
    """Reserve the gateway (the first host address unless given) and the containers' fixed
    addresses (`ip` or `ip6` of their attachment) before automatic ones are handed out."""
    gateway = gateway or str(next(net.hosts()))
    ctx.ipam.reserve(space, net, gateway)
    for c in ctx.spec.containers:
        for a in c.networks:
            if a.network == spec.name and getattr(a, attr) and (host is None or c.host == host):
                ctx.ipam.reserve(space, net, getattr(a, attr))
    return gateway


def network_for(ctx: BuildContext, spec: NetworkSpec, host: str | None, *, device: str | None,
                netns_name: str | None, mtu: int, vni: int | None = None) -> Network:
    """Allocate the subnet and record a Network in the lab (shared by all drivers)."""
    space = "global" if spec.driver == "overlay" else host
    subnet = gateway = subnet_v6 = gateway_v6 = None
    if spec.driver not in ("host", "null") and spec.ipv6:
        net6 = ctx.ipam.subnet6(space, spec.subnet_v6, seed=f"{ctx.lab.name}/{space}")
        subnet_v6 = str(net6)
        gateway_v6 = _reserve(ctx, spec, host, space, net6, spec.gateway_v6, "ip6")
    if spec.driver not in ("host", "null") and spec.ipv4:
        net = ctx.ipam.subnet(space, spec.subnet, swarm=spec.driver == "overlay")
        subnet = str(net)
        gateway = _reserve(ctx, spec, host, space, net, spec.gateway, "ip")
    network = Network(
        name=spec.name, driver=spec.driver,
        scope=Scope.SWARM if spec.driver == "overlay" else Scope.LOCAL,
        id=net_id(ctx.lab.name, spec.name), host=host, subnet=subnet, gateway=gateway,
        device=device, netns=netns_name, mtu=mtu, icc=spec.icc, internal=spec.internal,
        masquerade=spec.masquerade and not spec.internal, vni=vni,
        gateway_mode=spec.gateway_mode, host_ipv4=spec.host_ipv4, ipv4=spec.ipv4,
        ipv6=spec.ipv6, subnet_v6=subnet_v6, gateway_v6=gateway_v6,
        options={k: v for k, v in (("mode", spec.mode if spec.driver in ("macvlan", "ipvlan") else None),
                                   ("parent", spec.parent)) if v})
    ctx.lab.networks.append(network)
    return network


def address_for(ctx: BuildContext, network: Network, wanted: str | None) -> str | None:
    """The endpoint's IPv4 address (None on an IPv6-only network)."""
    if not network.subnet:
        return None
    if wanted:
        return wanted                         # reserved in network_for()
    return str(ctx.ipam.allocate(network.host or "global", ipaddress.IPv4Network(network.subnet)))


def address6_for(ctx: BuildContext, network: Network, wanted: str | None) -> str | None:
    """The endpoint's IPv6 address on an IPv6 network, next free in order as Docker's IPAM."""
    if not network.subnet_v6:
        return None
    if wanted:
        return wanted
    return str(ctx.ipam.allocate(network.host or "global", ipaddress.IPv6Network(network.subnet_v6)))
