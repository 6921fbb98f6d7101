"""SRC and DST as a user names them (container, client, host, IP, host:port) -> where to
send from and what to send to; `resolve_request` checks a whole InjectRequest once.
`node_address` resolves the nodes a capture replay names (--from, --rewrite NAME@NETWORK).
The one place a node is looked up by name."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nettrace.errors import NettraceError
from nettrace.inject.request import (LAYERS, MAX_COUNT, MAX_SIZE, MIN_SIZE, PROTOCOLS,
                                     InjectRequest, RequestError)
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
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _family(text: str | None) -> int | None:
    try:
        return ipaddress.ip_address(text).version if text else None
    except ValueError:
        return None


def _ep_ip(ep, family: int) -> str | None:
    return ep.ipv6 if family == 6 else ep.ipv4


def _nodes(lab: Lab) -> dict[str, Sandbox | Host]:
    return {**lab.hosts, **lab.clients, **lab.sandboxes}


def _sandbox_by_ip(lab: Lab, ip: str) -> Sandbox | None:
    return next((sb for sb in lab.sandboxes.values()
                 if any(ip in (ep.ipv4, ep.ipv6) for ep in sb.endpoints)), None)


def resolve_source(lab: Lab, text: str, toward: str | None = None) -> Source:
    """A container, client or host name, or a container's IP. The source address is of the
    destination's family (IPv6 toward an IPv6 address)."""
    family = _family(toward) or _family(text) or 4
    node = _nodes(lab).get(text)
    if node is None and _is_ip(text):
        node = _sandbox_by_ip(lab, text)
    if node is None:
        raise RequestError("src", f"SRC '{text}' is not a container, client or host of lab "
                            f"'{lab.name}' (known: {', '.join(sorted(_nodes(lab))) or 'none'})")
    if isinstance(node, Sandbox) and node.network_mode == "host" and node.host in lab.hosts:
        node = lab.hosts[node.host]                  # shares its Docker host's namespace
    if isinstance(node, Sandbox):
        if not node.endpoints:
            raise RequestError("src", f"SRC '{text}' has no network interface (network mode "
                                f"{node.network_mode}): it cannot send")
        candidates = [e for e in node.endpoints if _ep_ip(e, family)]
        if not candidates:
            raise RequestError("src", f"SRC '{text}' has no IPv{family} address (is one of its "
                                f"networks ipv6: true?)" if family == 6 else
                                f"SRC '{text}' has no IPv4 address (IPv6-only: use -6)")
        default = _default_route_endpoint(node)
        ep = default if default in candidates else candidates[0]
        if toward:                        # prefer the endpoint on the destination's subnet
            for cand in candidates:
                plen = cand.prefixlen6 if family == 6 else cand.prefixlen
                net = ipaddress.ip_network(f"{_ep_ip(cand, family)}/{plen}", strict=False)
                if _is_ip(toward) and ipaddress.ip_address(toward) in net:
                    ep = cand
                    break
        ip = text if _is_ip(text) else _ep_ip(ep, family)
        return Source(text, node.netns, ip, ep.ifname)
    if family == 4 and _is_ip(toward or "") and isinstance(node, Host):
        # a Docker host sends to a container on one of its bridges from that bridge's
        # gateway address, as its kernel picks the source (not from its uplink address)
        for net in lab.networks:
            if net.driver == "bridge" and net.netns == node.netns and net.gateway and \
                    net.subnet and ipaddress.ip_address(toward) in ipaddress.ip_network(net.subnet):
                return Source(text, node.netns, net.gateway, net.device)
    address = node.address6 if family == 6 else node.address
    if not address:
        raise RequestError("src", f"SRC '{text}' has no IPv{family} address on the underlay")
    return Source(text, node.netns, address, node.uplink)


def _default_route_endpoint(sb: Sandbox):
    """The endpoint of the container's default route: the source address the kernel picks
    for a destination off every attached subnet (an internal network's is never it)."""
    for route in sb.routes:
        words = route.split()
        if words[:1] == ["default"] and "dev" in words[:-1]:
            dev = words[words.index("dev") + 1]
            return next((ep for ep in sb.endpoints if ep.ifname == dev), None)
    return None



def _port(text: str, port_text: str) -> int:
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise RequestError("dst", f"DST '{text}': the port after ':' must be 1-65535") from None
    return port


def resolve_target(lab: Lab, text: str, src: str | None = None,
                   family: int | None = None) -> Target:
    """A container or node name, an IP address, or HOST:PORT / IP:PORT / [IPv6]:PORT.
    A name resolves to its address of `family` (4, or 6 for `nettrace path -6`)."""
    port = None
    name = text
    if text.startswith("[") and "]" in text:          # [fd00::2]:80
        name, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise RequestError("dst", f"DST '{text}': write an IPv6 address with a port as [ADDR]:PORT")
        port = _port(text, rest[1:]) if rest else None
    elif text.count(":") == 1:                        # HOST:PORT, IPv4:PORT
        name, _, port_text = text.rpartition(":")
        port = _port(text, port_text)
    if _is_ip(name):
        sb = _sandbox_by_ip(lab, name)
        return Target(text, name, port, sb.netns if sb else None)
    node = _nodes(lab).get(name)
    if node is None:
        raise RequestError("dst", f"DST '{text}' is not a container, client, host or IP address of "
                            f"lab '{lab.name}'")
    if isinstance(node, Sandbox) and node.network_mode == "host" and node.host in lab.hosts:
        node = lab.hosts[node.host]
    if isinstance(node, Sandbox):
        if family is None:               # IPv4 when it has one, else IPv6 (IPv6-only networks)
            family = 4 if _common_ip(lab, node, src, 4) else 6
        ip = _common_ip(lab, node, src, family)
        if not ip:
            raise RequestError("dst", f"DST '{text}' has no IPv{family} address")
        return Target(text, ip, port, node.netns)
    address = node.address6 if family == 6 else node.address
    if not address:
        raise RequestError("dst", f"DST '{text}' has no IPv{family or 4} underlay address")
    return Target(text, address, port, node.netns)


def _common_ip(lab: Lab, dst: Sandbox, src: str | None, family: int = 4) -> str | None:
    """The destination's address (of `family`) on a network it shares with the source."""
    src_node = lab.sandboxes.get(src or "")
    if src_node is not None:
        nets = {ep.network for ep in src_node.endpoints if _ep_ip(ep, family)}
        for ep in dst.endpoints:
            if ep.network in nets and _ep_ip(ep, family):
                return _ep_ip(ep, family)
    if src in lab.hosts and dst.host == src:
        # its own Docker host reaches a container through one of its bridges (a macvlan
        # child is not reachable from its parent's host)
        for ep in dst.endpoints:
            if ep.host_netns == lab.hosts[src].netns and _ep_ip(ep, family):
                return _ep_ip(ep, family)
    return dst.ip6() if family == 6 else dst.ip()


@dataclass(frozen=True)
class NodeAddress:
    name: str
    ip: str | None
    mac: str | None
    netns: str


def node_address(lab: Lab, ref: str) -> NodeAddress:
    """A node as a capture's --from and --rewrite name it: `NAME` or `NAME@NETWORK`, the
    address a lab node uses (its first endpoint by default); `@NETWORK`: the network's
    gateway (its bridge). With its MAC, which rewriting puts on frames."""
    name, _, network = ref.partition("@")
    if not name and network:
        return _gateway(lab, network)
    node = _nodes(lab).get(name)
    if node is None:
        raise NettraceError(f"no container, client or host named '{name}' in lab {lab.name} "
                            f"(it has: {', '.join(sorted(_nodes(lab)))})")
    endpoints = getattr(node, "endpoints", None)
    if endpoints is not None:                       # a container (sandbox)
        chosen = [e for e in endpoints if not network or e.network == network]
        if not chosen:
            where = f" on network '{network}'" if network else ""
            raise NettraceError(f"container {name} has no endpoint{where} in lab {lab.name}")
        return NodeAddress(ref, chosen[0].ipv4, chosen[0].mac, node.netns)
    if network:
        raise NettraceError(f"'{ref}': only containers take @NETWORK")
    itf = lab.interface(node.netns, node.uplink) if node.uplink else None
    return NodeAddress(ref, node.address, itf.mac if itf else None, node.netns)


def _gateway(lab: Lab, network: str) -> NodeAddress:
    nets = [n for n in lab.networks if n.name == network]
    if not nets:
        raise NettraceError(f"no network named '{network}' in lab {lab.name} (it has: "
                            f"{', '.join(sorted({n.name for n in lab.networks}))})")
    net = nets[0]
    itf = lab.interface(net.netns, net.device) if net.netns and net.device else None
    return NodeAddress(f"@{network}", net.gateway, itf.mac if itf else None, net.netns or "")


#: addresses a packet to which never leaves its sender (or is not one flow): refused as DST
_SPECIAL = ((lambda a: a.is_unspecified, "the unspecified address"),
            (lambda a: a.is_loopback, "a loopback address"),
            (lambda a: a.is_multicast, "a multicast address"),
            (lambda a: a == ipaddress.IPv4Address("255.255.255.255"), "the broadcast address"))


@dataclass(frozen=True)
class Resolved:
    """An InjectRequest checked against its lab: where to send from, what to send to."""

    request: InjectRequest
    source: Source
    target: Target
    proto: str                  # the request's, or its default (tcp to HOST:PORT, else icmp)
    port: int | None            # --dport, or DST's :PORT
    layer: str                  # l2 for arp and nd


def resolve_request(lab: Lab, request: InjectRequest) -> Resolved:
    """The one check of an inject request (`nettrace path`, the TUI form, `Tracer.path`),
    before anything is traced. Every field is in range; SRC and DST are different nodes of
    the lab, DST a unicast address; a port goes with tcp or udp only, and --dport agrees
    with DST's :PORT. Raises RequestError naming the field."""
    r = request
    if not r.src:
        raise RequestError("src", "SRC: name the container, client or host to send from")
    if not r.dst or not r.dst.strip():
        raise RequestError("dst", "DST: a container, client or host name, an IP, or HOST:PORT")
    if r.proto is not None and r.proto not in PROTOCOLS:
        raise RequestError("proto", f"--proto must be {', '.join(PROTOCOLS[:-1])} or "
                                    f"{PROTOCOLS[-1]} (not {r.proto!r})")
    if r.dport is not None and not 0 < r.dport < 65536:
        raise RequestError("dport", f"--dport must be 1-65535 (not {r.dport})")
    if not 1 <= r.count <= MAX_COUNT:
        raise RequestError("count", f"--count must be 1-{MAX_COUNT} (not {r.count})")
    if r.size is not None and not MIN_SIZE <= r.size <= MAX_SIZE:
        raise RequestError("size", f"--size must be {MIN_SIZE}-{MAX_SIZE} bytes (not {r.size})")
    if r.family not in (None, 4, 6):
        raise RequestError("family", f"the address family is 4 or 6 (not {r.family!r})")
    if r.layer not in LAYERS:
        raise RequestError("layer", f"layer must be 'l3' or 'l2' (not {r.layer!r})")
    family = 6 if r.proto == "nd" else r.family
    dst = r.dst.strip()
    target = resolve_target(lab, dst, r.src, family=family)
    addr = ipaddress.ip_address(target.ip)
    for test, what in _SPECIAL:
        if test(addr):
            raise RequestError("dst", f"DST '{dst}' is {what}: name a container, node or "
                                      f"unicast address of lab '{lab.name}'")
    source = resolve_source(lab, r.src, toward=target.ip)
    if source.netns == target.netns or source.ip == target.ip:
        raise RequestError("dst", f"SRC '{r.src}' and DST '{dst}' are the same node: the "
                                  f"packet would never leave it (pick another destination)")
    proto = r.proto or ("tcp" if target.port else "icmp")
    if r.dport and target.port and r.dport != target.port:
        raise RequestError("dport", f"--dport {r.dport} contradicts DST's port "
                                    f"({dst}): give one of them")
    port = r.dport or target.port
    if port and proto in ("icmp", "arp", "nd"):
        raise RequestError("dport" if r.dport else "dst",
                           f"{proto} has no ports: --dport {port} needs --proto tcp or udp")
    layer = "l2" if proto in ("arp", "nd") else r.layer
    return Resolved(r, source, target, proto, port, layer)
