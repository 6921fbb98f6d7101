"""Sandboxes: a container's namespace, its default route and DNS settings."""

from __future__ import annotations

from nettrace.topology import netns, sandbox_files
from nettrace.topology.model import GatewayMode, Interface, Role, Sandbox
from nettrace.topology.spec import ContainerSpec


class SandboxDriver:
    def create_sandbox(self, ctx, ctr: ContainerSpec) -> Sandbox:
        host = ctx.lab.hosts[ctr.host]
        if ctr.mode == "host":
            return Sandbox(name=ctr.name, host=ctr.host, netns=host.netns, network_mode="host")
        ns = ctx.new_netns(ctr.host, ctr.name)
        ctx.record(Interface(ns, "lo", Role.LOOPBACK, host=ctr.host, sandbox=ctr.name))
        return Sandbox(name=ctr.name, host=ctr.host, netns=ns, network_mode=ctr.mode)

    def finish_sandbox(self, ctx, sandbox: Sandbox, ctr: ContainerSpec) -> None:
        """Default route via the gateway network (first non-internal bridge/macvlan/gwbridge;
        Docker 20.10 falls back to an internal bridge's gateway), DNS files, sysctls."""
        gateway_ep, gw_net = _gateway_endpoint(ctx.lab, sandbox)
        if gateway_ep is not None and sandbox.network_mode != "host":
            ipr = ctx.ipr(sandbox.netns)
            if gw_net.driver == "ipvlan" and gw_net.options.get("mode") in ("l3", "l3s"):
                ipr.route("add", dst="0.0.0.0/0", oif=ctx.index(sandbox.netns, gateway_ep.ifname))
                sandbox.routes.append(f"default dev {gateway_ep.ifname}")
            else:
                ipr.route("add", dst="0.0.0.0/0", gateway=gw_net.gateway)
                sandbox.routes.append(f"default via {gw_net.gateway} dev {gateway_ep.ifname}")
        if sandbox.network_mode != "host":
            _default_route_v6(ctx, sandbox)
        for ep in sandbox.endpoints:
            net = ctx.lab.network(ep.network, sandbox.host)
            if ep.ipv4:
                sandbox.routes.append(f"{net.subnet} dev {ep.ifname} proto kernel scope link "
                                      f"src {ep.ipv4}")
            if ep.ipv6:
                sandbox.routes.append(f"{net.subnet_v6} dev {ep.ifname} proto kernel metric 256")
        user_defined = any(a.network not in ("bridge", "host", "none") for a in ctr.networks)
        if "host-resolv.conf" not in ctx.driver_state:
            ctx.driver_state["host-resolv.conf"] = sandbox_files.read_host_resolv_conf()
        sandbox_files.fill(ctx.lab, sandbox, embedded_dns=user_defined,
                           host_text=ctx.driver_state["host-resolv.conf"])
        sandbox.published = [str(p) for p in ctr.publish]
        sandbox.listen = list(ctr.listen)
        if sandbox.network_mode != "host":
            # what Docker sets in every container namespace
            netns.sysctl_write(sandbox.netns, "net.ipv4.ping_group_range", "0\t2147483647")
            netns.sysctl_write(sandbox.netns, "net.ipv4.ip_unprivileged_port_start", 0)
        ctx.lab.sandboxes[sandbox.name] = sandbox


def _default_route_v6(ctx, sandbox: Sandbox) -> None:
    """IPv6 default route via the first non-internal IPv6 network's gateway, as Docker adds it."""
    for ep in sandbox.endpoints:
        net = ctx.lab.network(ep.network, sandbox.host)
        if ep.ipv6 and net.gateway_v6 and not net.internal and \
                net.driver in ("bridge", "macvlan"):
            ctx.ipr(sandbox.netns).route("add", dst="::/0", gateway=net.gateway_v6,
                                         oif=ctx.index(sandbox.netns, ep.ifname))
            sandbox.routes.append(f"default via {net.gateway_v6} dev {ep.ifname} metric 1024")
            return


def _gateway_endpoint(lab, sandbox: Sandbox):
    """(endpoint, network) giving the container its IPv4 default route, or (None, None).

    Docker prefers a network that is not internal (and, from 28, an internal or isolated
    network gives no default route at all). Docker 20.10's bridge driver sets its gateway on
    internal networks too: a container only on internal networks gets `default via` the
    first one's gateway (recorded on the real 20.10 engine; the firewall drops the traffic).
    """
    if sandbox.network_mode == "host":
        return None, None
    fallback = (None, None)
    for ep in sandbox.endpoints:
        net = lab.network(ep.network, sandbox.host)
        if net.driver not in ("bridge", "macvlan", "ipvlan") or not net.gateway or not ep.ipv4:
            continue
        if net.internal:
            if lab.engine.internal_default_route and net.driver == "bridge" and \
                    fallback[0] is None:
                fallback = (ep, net)
            continue
        if net.gateway_mode is GatewayMode.ISOLATED:      # no gateway address on the bridge
            continue
        return ep, net
    return fallback
