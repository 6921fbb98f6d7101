"""bridge driver: docker0 and user-defined br-<id12> bridges, veth per container.

With the userland proxy (Docker's default) docker-proxy serves the host's own and same-bridge
connections to a published port, and Docker leaves the bridge as it is. With the hairpin-NAT
layout (proxy off), Docker sets route_localnet=1 on the bridge and hairpin on every port, so
the host, the external client and other containers all reach a published port through DNAT
alone (docker-drivers.md §2.2, §2.3, §9; measured side by side with the real engine).
"""

from __future__ import annotations

import os

from nettrace.topology import firewall, netns
from nettrace.topology.context import (address6_for, address_for, net_id, network_for,
                                       random_mac, short_hash)
from nettrace.topology.drivers.base import IFA_F_NODAD, NullDriver, veth_endpoint
from nettrace.topology.model import GatewayMode, Interface, Role, Sandbox


class BridgeDriver(NullDriver):
    def create_network(self, ctx, spec, host) -> None:
        host_ns = ctx.lab.hosts[host].netns
        device = spec.bridge_name or f"br-{net_id(ctx.lab.name, spec.name)[:12]}"
        network = network_for(ctx, spec, host, device=device, netns_name=host_ns,
                              mtu=spec.mtu or 1500)
        ipr = ctx.ipr(host_ns)
        mac = random_mac(ctx.lab.name, host, device)
        ipr.link("add", ifname=device, kind="bridge", address=mac, mtu=network.mtu)
        idx = ctx.index(host_ns, device)
        if network.gateway and network.gateway_mode is not GatewayMode.ISOLATED:
            # (gateway mode isolated: Docker gives the bridge no address)
            ipr.addr("add", index=idx, address=network.gateway,
                     prefixlen=int(network.subnet.split("/")[1]))
        if network.gateway_v6:
            ipr.addr("add", index=idx, address=network.gateway_v6,
                     prefixlen=int(network.subnet_v6.split("/")[1]), flags=IFA_F_NODAD)
            # dockerd turns IPv6 forwarding on when it has an IPv6 network
            netns.sysctl_write(host_ns, "net.ipv6.conf.all.forwarding", 1)
        ipr.link("set", index=idx, state="up")
        if firewall.hairpin_nat(ctx.lab):
            with netns.entered(host_ns):
                with open(os.path.join("/proc/sys/net/ipv4/conf", device, "route_localnet"),
                          "w") as f:
                    f.write("1")
        ctx.record(Interface(host_ns, device, Role.BRIDGE, host=host, network=spec.name,
                             kind="bridge", mac=mac))

    def join(self, ctx, spec, sandbox: Sandbox, att) -> None:
        network = ctx.lab.network(spec.name, sandbox.host)
        ip = address_for(ctx, network, att.ip)
        veth_endpoint(ctx, network, sandbox, bridge_ns=network.netns, bridge=network.device,
                      host_ifname="veth" + short_hash(ctx.lab.name, sandbox.name, spec.name),
                      ip=ip, hairpin=firewall.hairpin_nat(ctx.lab),
                      ip6=address6_for(ctx, network, att.ip6))

    def finish(self, ctx) -> None:
        """Hairpin on every bridge port (hairpin-NAT layout), one `bridge -batch` per host.

        pyroute2's brport() does not set IFLA_BRPORT_MODE on this kernel, so iproute2 does it.
        """
        for key, ports in ctx.driver_state.items():
            if isinstance(key, tuple) and key[0] == "hairpin":
                batch = "".join(f"link set dev {port} hairpin on\n" for port in ports)
                netns.run(key[1], ["bridge", "-batch", "-"], input=batch)
