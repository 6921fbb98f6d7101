"""macvlan (and ipvlan) driver: containers as sub-interfaces of a parent on the host.

The parent is the host's uplink (eth0) when the lab has an underlay, else a veth end
whose peer is up (this kernel has no dummy or 802.1Q devices, which is what Docker uses
when no parent is given or the parent is a VLAN sub-interface). No iptables rules.
"""

from __future__ import annotations

from nettrace.topology import netns
from nettrace.topology.context import address6_for, address_for, network_for, short_hash
from nettrace.topology.drivers.base import NullDriver, add_addresses
from nettrace.topology.ipam import mac_for, mac_for_v6
from nettrace.topology.model import Endpoint, Interface, Role, Sandbox


class MacvlanDriver(NullDriver):
    kind = "macvlan"

    def create_network(self, ctx, spec, host) -> None:
        host_obj = ctx.lab.hosts[host]
        ns = host_obj.netns
        parent = spec.parent or ("eth0" if host_obj.uplink else "mvparent")
        ipr = ctx.ipr(ns)
        if not ipr.link_lookup(ifname=parent):
            peer = f"{parent[:10]}-peer"
            ipr.link("add", ifname=parent, kind="veth", peer={"ifname": peer})
            for name in (peer, parent):           # the peer must be up, or children lack carrier
                ipr.link("set", index=ctx.index(ns, name), state="up")
            ctx.record(Interface(ns, peer, Role.MACVLAN_PARENT, host=host, network=spec.name,
                                 kind="veth", peer=f"{ns}/{parent}"))
        ctx.record(Interface(ns, parent, Role.MACVLAN_PARENT if parent != "eth0" else Role.UPLINK,
                             host=host, network=spec.name, kind="veth"))
        mtu = ipr.get_links(ctx.index(ns, parent))[0].get_attr("IFLA_MTU")
        network_for(ctx, spec, host, device=parent, netns_name=ns, mtu=spec.mtu or mtu)

    def join(self, ctx, spec, sandbox: Sandbox, att) -> None:
        network = ctx.lab.network(spec.name, sandbox.host)
        host_ns = network.netns
        ip = address_for(ctx, network, att.ip)
        ip6 = address6_for(ctx, network, att.ip6)
        mac = mac_for(ip) if ip else mac_for_v6(ctx.lab.name, sandbox.name, network.name)
        ifname = f"eth{len(sandbox.endpoints)}"
        tmp = "mv" + short_hash(ctx.lab.name, sandbox.name, spec.name)
        ipr = ctx.ipr(host_ns)
        extra = {"macvlan_mode": network.options.get("mode", "bridge")} if self.kind == "macvlan" \
            else {"ipvlan_mode": {"l2": 0, "l3": 1, "l3s": 2}[network.options.get("mode", "l2")]}
        ipr.link("add", ifname=tmp, kind=self.kind, link=ctx.index(host_ns, network.device),
                 mtu=network.mtu, **extra)
        ipr.link("set", index=ctx.index(host_ns, tmp), net_ns_fd=netns.path(sandbox.netns))
        inner = ctx.ipr(sandbox.netns)
        idx = ctx.index(sandbox.netns, tmp)
        if self.kind == "macvlan":
            inner.link("set", index=idx, ifname=ifname, address=mac)
        else:
            inner.link("set", index=idx, ifname=ifname)
        prefixlen, prefixlen6 = add_addresses(inner, idx, network, ip, ip6)
        inner.link("set", index=idx, state="up")
        sandbox.endpoints.append(Endpoint(
            name=f"{sandbox.name}-{network.name}", container=sandbox.name, network=network.name,
            ifname=ifname, mac=mac, ipv4=ip, prefixlen=prefixlen, mtu=network.mtu,
            ipv6=ip6, prefixlen6=prefixlen6))
        ctx.record(Interface(sandbox.netns, ifname, Role.CONTAINER, host=sandbox.host,
                             sandbox=sandbox.name, network=network.name, kind=self.kind, mac=mac,
                             peer=f"{host_ns}/{network.device}"))


class IpvlanDriver(MacvlanDriver):
    """Same wiring with ipvlan children; refused up front on kernels without CONFIG_IPVLAN."""

    kind = "ipvlan"
