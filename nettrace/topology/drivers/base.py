"""The driver interfaces and the veth plumbing the bridge and overlay drivers share.

Drivers are handed to the builder (`builder.up(spec, drivers=..., sandboxes=...)`) and
build with what `nettrace.topology.context` gives them; they never import the builder.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from nettrace.topology import netns
from nettrace.topology.context import BuildContext
from nettrace.topology.ipam import mac_for, mac_for_v6
from nettrace.topology.model import Endpoint, Interface, Network, Role, Sandbox
from nettrace.topology.spec import Attachment, ContainerSpec, NetworkSpec


@runtime_checkable
class Driver(Protocol):
    """A network driver, in the builder's three steps."""

    def create_network(self, ctx: BuildContext, spec: NetworkSpec, host: str | None) -> None:
        """The network on `host` (None: swarm scope, one network across hosts)."""

    def join(self, ctx: BuildContext, spec: NetworkSpec, sandbox: Sandbox,
             att: Attachment) -> None:
        """An endpoint of `sandbox` on the network (appended to `sandbox.endpoints`)."""

    def finish(self, ctx: BuildContext) -> None:
        """Once every container has joined (overlay peers, hairpin ports)."""


@runtime_checkable
class SandboxWiring(Protocol):
    """Containers' namespaces: created before their networks join, finished after."""

    def create_sandbox(self, ctx: BuildContext, ctr: ContainerSpec) -> Sandbox: ...

    def finish_sandbox(self, ctx: BuildContext, sandbox: Sandbox, ctr: ContainerSpec) -> None:
        ...


class NullDriver:
    """A driver that creates nothing (host, none): the base of the others."""

    def create_network(self, ctx: BuildContext, spec: NetworkSpec, host: str | None) -> None:
        return None

    def join(self, ctx: BuildContext, spec: NetworkSpec, sandbox: Sandbox,
             att: Attachment) -> None:
        return None

    def finish(self, ctx: BuildContext) -> None:
        return None


IFA_F_NODAD = 0x02


def add_addresses(ipr, index: int, network: Network, ip: str | None,
                  ip6: str | None) -> tuple[int, int | None]:
    """An endpoint's IPv4 and IPv6 addresses; IPv6 without duplicate address detection, as
    Docker adds them (so the address is usable at once). Returns both prefix lengths."""
    prefixlen = int(network.subnet.split("/")[1]) if network.subnet else 0
    if ip:
        ipr.addr("add", index=index, address=ip, prefixlen=prefixlen)
    prefixlen6 = int(network.subnet_v6.split("/")[1]) if network.subnet_v6 else None
    if ip6:
        ipr.addr("add", index=index, address=ip6, prefixlen=prefixlen6, flags=IFA_F_NODAD)
    return prefixlen, prefixlen6


def veth_endpoint(ctx: BuildContext, network: Network, sandbox: Sandbox, *, bridge_ns: str,
                  bridge: str, host_ifname: str, ip: str | None, hairpin: bool,
                  ip6: str | None = None) -> Endpoint:
    """A veth pair: `host_ifname` as a port of `bridge` in `bridge_ns`, ethN in the sandbox.

    The peer is created directly inside the container's namespace with its final name,
    MAC and MTU (Docker creates, moves and renames; the resulting kernel state is the same).
    """
    ifname = f"eth{len(sandbox.endpoints)}"
    mac = mac_for(ip) if ip else mac_for_v6(ctx.lab.name, sandbox.name, network.name)
    ipr = ctx.ipr(bridge_ns)
    # one RTM_NEWLINK creates both ends, enslaves the host end and brings it up
    ipr.link("add", ifname=host_ifname, kind="veth", mtu=network.mtu,
             master=ctx.bridge_index(bridge_ns, bridge), state="up",
             peer={"ifname": ifname, "net_ns_fd": netns.path(sandbox.netns), "address": mac,
                   "mtu": network.mtu})
    if hairpin:   # set in one `bridge -batch` per namespace by BridgeDriver.finish()
        ctx.driver_state.setdefault(("hairpin", bridge_ns), []).append(host_ifname)
    inner = ctx.ipr(sandbox.netns)
    cidx = ctx.index(sandbox.netns, ifname)
    prefixlen, prefixlen6 = add_addresses(inner, cidx, network, ip, ip6)
    inner.link("set", index=cidx, state="up")
    ep = Endpoint(name=f"{sandbox.name}-{network.name}", container=sandbox.name,
                  network=network.name, ifname=ifname, mac=mac, ipv4=ip, prefixlen=prefixlen,
                  mtu=network.mtu, host_ifname=host_ifname, host_netns=bridge_ns,
                  ipv6=ip6, prefixlen6=prefixlen6)
    sandbox.endpoints.append(ep)
    host = sandbox.host
    owner = None if bridge_ns == ctx.lab.hosts[host].netns else bridge_ns.split(".")[-1]
    ctx.record(Interface(bridge_ns, host_ifname, Role.VETH_HOST, host=host, sandbox=owner,
                         network=network.name, kind="veth", peer=f"{sandbox.netns}/{ifname}"))
    ctx.record(Interface(sandbox.netns, ifname, Role.CONTAINER, host=host, sandbox=sandbox.name,
                         network=network.name, kind="veth", mac=mac,
                         peer=f"{bridge_ns}/{host_ifname}"))
    return ep
