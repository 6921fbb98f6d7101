"""overlay driver (swarm scope): VXLAN between hosts, as libnetwork programs it.

Per network and host, a sandbox namespace (Docker's `1-<netid10>`) holds `br0` (the subnet
gateway address, MTU 1450) and `vxlan0`. The vxlan device is created in the host's namespace
and then moved, so its UDP socket stays on the host and the underlay carries the outer
UDP 4789 packets. Remote endpoints are programmed statically (the gossip control plane is
replaced by the lab file): a permanent neighbour entry and an FDB entry pointing at the
remote VTEP. Containers get eth0 on the overlay and eth1 on docker_gwbridge for egress.
"""

from __future__ import annotations

from types import SimpleNamespace

from nettrace.topology import netns
from nettrace.topology.context import address6_for, address_for, network_for
from nettrace.topology.drivers.base import NullDriver, add_addresses, veth_endpoint
from nettrace.topology.drivers.bridge import BridgeDriver
from nettrace.topology.model import VXLAN_OVERHEAD, Interface, Role, Sandbox
from nettrace.topology.spec import Attachment

VNI_START = 4096
VXLAN_PORT = 4789


class OverlayDriver(NullDriver):
    def _state(self, ctx) -> dict:
        return ctx.driver_state.setdefault("overlay", {"vnis": set(), "sboxes": {}, "endpoints": []})

    def create_network(self, ctx, spec, host) -> None:
        state = self._state(ctx)
        vni = spec.vni or next(v for v in range(VNI_START, 2 ** 24) if v not in state["vnis"])
        state["vnis"].add(vni)
        network_for(ctx, spec, None, device="br0", netns_name=None,
                    mtu=(spec.mtu or 1500) - VXLAN_OVERHEAD, vni=vni)

    def _sandbox(self, ctx, network, host: str) -> str:
        """The per-network sandbox on `host`, built on the first local join."""
        key = (network.name, host)
        state = self._state(ctx)
        if key in state["sboxes"]:
            return state["sboxes"][key]
        host_ns = ctx.lab.hosts[host].netns
        label = f"ov-{network.name}"
        ns = ctx.new_netns(host, "1-" + network.id[:10])
        ipr = ctx.ipr(ns)
        ipr.link("add", ifname="br0", kind="bridge", mtu=network.mtu)
        br = ctx.index(ns, "br0")
        add_addresses(ipr, br, network, network.gateway, network.gateway_v6)
        vx_name = f"vx-{network.vni:06x}-{network.id[:5]}"
        host_ipr = ctx.ipr(host_ns)
        host_ipr.link("add", ifname=vx_name, kind="vxlan", vxlan_id=network.vni,
                      vxlan_port=VXLAN_PORT, vxlan_learning=1, vxlan_proxy=1, vxlan_l2miss=1,
                      vxlan_l3miss=1, mtu=network.mtu)
        host_ipr.link("set", index=ctx.index(host_ns, vx_name), net_ns_fd=netns.path(ns))
        vx = ctx.index(ns, vx_name)
        ipr.link("set", index=vx, ifname="vxlan0")
        ipr.link("set", index=vx, master=br, state="up")
        ipr.link("set", index=br, state="up")
        ctx.record(Interface(ns, "br0", Role.BRIDGE, host=host, sandbox=label,
                             network=network.name, kind="bridge"))
        ctx.record(Interface(ns, "vxlan0", Role.VXLAN, host=host, sandbox=label,
                             network=network.name, kind="vxlan"))
        state["sboxes"][key] = ns
        return ns

    def join(self, ctx, spec, sandbox: Sandbox, att) -> None:
        network = ctx.lab.network(spec.name)
        sbox = self._sandbox(ctx, network, sandbox.host)
        ip = address_for(ctx, network, att.ip)
        ip6 = address6_for(ctx, network, att.ip6)
        ports = sum(1 for i in ctx.lab.interfaces if i.netns == sbox and i.role == Role.VETH_HOST)
        ep = veth_endpoint(ctx, network, sandbox, bridge_ns=sbox, bridge="br0",
                           host_ifname=f"veth{ports}", ip=ip, hairpin=False, ip6=ip6)
        for itf in ctx.lab.interfaces:
            if itf.netns == sbox and itf.ifname == f"veth{ports}":
                itf.sandbox = f"ov-{network.name}"
        for addr in (ep.ipv4, ep.ipv6):
            if addr:
                self._state(ctx)["endpoints"].append((network.name, sandbox.host, addr, ep.mac))
        if not network.internal:
            BridgeDriver().join(ctx, SimpleNamespace(name="docker_gwbridge"), sandbox,
                                Attachment("docker_gwbridge"))

    def finish(self, ctx) -> None:
        """peerAdd: program every remote endpoint into each host's network sandbox."""
        from pyroute2.netlink.rtnl.ndmsg import states
        state = ctx.driver_state.get("overlay")
        if not state:
            return
        fdb_done: set = set()
        for (net_name, host), sbox in state["sboxes"].items():
            ipr = ctx.ipr(sbox)
            vx = ctx.index(sbox, "vxlan0")
            for other_net, other_host, ip, mac in state["endpoints"]:
                if other_net != net_name or other_host == host:
                    continue
                vtep = ctx.lab.hosts[other_host].address
                ipr.neigh("add", dst=ip, lladdr=mac, ifindex=vx, state=states["permanent"])
                if (sbox, mac) not in fdb_done:          # one FDB entry per MAC, both families
                    fdb_done.add((sbox, mac))
                    ipr.fdb("add", ifindex=vx, lladdr=mac, dst=vtep, state=states["permanent"])
