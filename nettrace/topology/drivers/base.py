"""The driver interface and the veth plumbing the bridge and overlay drivers share."""

from __future__ import annotations

from nettrace.topology import netns
from nettrace.topology.ipam import mac_for
from nettrace.topology.model import Endpoint, Interface, Network, Role, Sandbox


class Driver:
    """A driver that creates nothing (host, none)."""

    def create_network(self, ctx, spec, host) -> None:
        return None

    def join(self, ctx, spec, sandbox: Sandbox, att) -> None:
        return None

    def finish(self, ctx) -> None:
        return None


def veth_endpoint(ctx, network: Network, sandbox: Sandbox, *, bridge_ns: str, bridge: str,
                  host_ifname: str, ip: str, hairpin: bool) -> Endpoint:
    """A veth pair: `host_ifname` as a port of `bridge` in `bridge_ns`, ethN in the sandbox.

    The peer is created directly inside the container's namespace with its final name,
    MAC and MTU (Docker creates, moves and renames; the resulting kernel state is the same).
    """
    ifname = f"eth{len(sandbox.endpoints)}"
    mac = mac_for(ip)
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
    prefixlen = int(network.subnet.split("/")[1])
    inner.addr("add", index=cidx, address=ip, prefixlen=prefixlen)
    inner.link("set", index=cidx, state="up")
    ep = Endpoint(name=f"{sandbox.name}-{network.name}", container=sandbox.name,
                  network=network.name, ifname=ifname, mac=mac, ipv4=ip, prefixlen=prefixlen,
                  mtu=network.mtu, host_ifname=host_ifname, host_netns=bridge_ns)
    sandbox.endpoints.append(ep)
    host = sandbox.host
    owner = None if bridge_ns == ctx.lab.hosts[host].netns else bridge_ns.split(".")[-1]
    ctx.record(Interface(bridge_ns, host_ifname, Role.VETH_HOST, host=host, sandbox=owner,
                         network=network.name, kind="veth", peer=f"{sandbox.netns}/{ifname}"))
    ctx.record(Interface(sandbox.netns, ifname, Role.CONTAINER, host=host, sandbox=sandbox.name,
                         network=network.name, kind="veth", mac=mac,
                         peer=f"{bridge_ns}/{host_ifname}"))
    return ep
