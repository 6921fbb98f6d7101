"""SRC and DST as a user names them (container, client, host, IP, host:port) -> where to
send from and what to send to."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nettrace.errors import NettraceError
from nettrace.topology.model import Host, Lab, Sandbox


@dataclass
class Source:
    name: str
    netns: str
    ip: str
    ifname: str | None          # interface for layer-2 injection


@dataclass
class Target:
    name: str
    ip: str
    port: int | None = None
    netns: str | None = None    # known when DST names a container or a node


def _is_ip(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def _nodes(lab: Lab) -> dict[str, Sandbox | Host]:
    return {**lab.hosts, **lab.clients, **lab.sandboxes}


def _sandbox_by_ip(lab: Lab, ip: str) -> Sandbox | None:
    return next((sb for sb in lab.sandboxes.values()
                 if any(ep.ipv4 == ip for ep in sb.endpoints)), None)


def resolve_source(lab: Lab, text: str, toward: str | None = None) -> Source:
    """A container, client or host name, or a container's IP."""
    node = _nodes(lab).get(text)
    if node is None and _is_ip(text):
        node = _sandbox_by_ip(lab, text)
    if node is None:
        raise NettraceError(f"SRC '{text}' is not a container, client or host of lab "
                            f"'{lab.name}' (known: {', '.join(sorted(_nodes(lab))) or 'none'})")
    if isinstance(node, Sandbox) and node.network_mode == "host" and node.host in lab.hosts:
        node = lab.hosts[node.host]                  # shares its Docker host's namespace
    if isinstance(node, Sandbox):
        if not node.endpoints:
            raise NettraceError(f"SRC '{text}' has no network interface (network mode "
                                f"{node.network_mode}): it cannot send")
        ep = _default_route_endpoint(node) or node.endpoints[0]
        if toward:                        # prefer the endpoint on the destination's subnet
            for cand in node.endpoints:
                net = ipaddress.ip_network(f"{cand.ipv4}/{cand.prefixlen}", strict=False)
                if _is_ip(toward) and ipaddress.IPv4Address(toward) in net:
                    ep = cand
                    break
        ip = _ip_in(text, ep.ipv4, node.ip())
        return Source(text, node.netns, ip, ep.ifname)
    if not node.address:
        raise NettraceError(f"SRC '{text}' has no address on the underlay")
    return Source(text, node.netns, node.address, node.uplink)


def _default_route_endpoint(sb: Sandbox):
    """The endpoint of the container's default route: the source address the kernel picks
    for a destination off every attached subnet (an internal network's is never it)."""
    for route in sb.routes:
        words = route.split()
        if words[:1] == ["default"] and "dev" in words[:-1]:
            dev = words[words.index("dev") + 1]
            return next((ep for ep in sb.endpoints if ep.ifname == dev), None)
    return None


def _ip_in(text: str, ep_ip: str, default: str | None) -> str:
    return text if _is_ip(text) else (ep_ip or default or "")


def resolve_target(lab: Lab, text: str, src: str | None = None) -> Target:
    """A container or node name, an IPv4 address, or HOST:PORT / IP:PORT."""
    port = None
    name = text
    if ":" in text:
        name, _, port_text = text.rpartition(":")
        try:
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise NettraceError(f"DST '{text}': the port after ':' must be 1-65535") from None
    if _is_ip(name):
        sb = _sandbox_by_ip(lab, name)
        return Target(text, name, port, sb.netns if sb else None)
    node = _nodes(lab).get(name)
    if node is None:
        raise NettraceError(f"DST '{text}' is not a container, client, host or IPv4 address of "
                            f"lab '{lab.name}'")
    if isinstance(node, Sandbox) and node.network_mode == "host" and node.host in lab.hosts:
        node = lab.hosts[node.host]
    if isinstance(node, Sandbox):
        ip = _common_ip(lab, node, src)
        if not ip:
            raise NettraceError(f"DST '{text}' has no IPv4 address")
        return Target(text, ip, port, node.netns)
    if not node.address:
        raise NettraceError(f"DST '{text}' has no underlay address")
    return Target(text, node.address, port, node.netns)


def _common_ip(lab: Lab, dst: Sandbox, src: str | None) -> str | None:
    """The destination's address on a network it shares with the source, if any."""
    src_node = lab.sandboxes.get(src or "")
    if src_node is not None:
        nets = {ep.network for ep in src_node.endpoints}
        for ep in dst.endpoints:
            if ep.network in nets:
                return ep.ipv4
    return dst.ip()
