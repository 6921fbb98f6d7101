"""The driver interface and the veth plumbing the bridge and overlay drivers share."""

from __future__ import annotations

from nettrace.topology import netns
from nettrace.topology.ipam import mac_for, mac_for_v6
from nettrace.topology.model import Endpoint, Interface, Network, Role, Sandbox


class Driver:
    """A driver that creates nothing (host, none)."""

    def create_network(self, ctx, spec, host) -> None:
        return None

    def join(self, ctx, spec, sandbox: Sandbox, att) -> None:
        return None

    def finish(self, ctx) -> None:
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


def veth_endpoint(ctx, network: Network, sandbox: Sandbox, *, bridge_ns: str, bridge: str,
                  host_ifname: str, ip: str | None, hairpin: bool,
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
