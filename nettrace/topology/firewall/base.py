"""What every engine profile shares: rendered rules with their purpose, the Profile
interface, and an iptables-restore document builder for the iptables-syntax profiles."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nettrace.topology.firewall.purposes import RulePurpose

if TYPE_CHECKING:
    from nettrace.topology.model import FwRule, Host, Lab

#: the iptables-nft tables as the kernel lists them (raw first: it runs first)
IPT_TABLES = ("raw", "mangle", "filter", "nat")
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
}


@dataclass
class RenderedRule:
    """One rule as a profile renders it, in the profile's own syntax."""

    table: str
    chain: str
    text: str                      # "-A DOCKER ! -i br0 -o br0 -j DROP" / nft rule text
    purpose: RulePurpose
    network: str | None = None     # the network it was rendered for


@dataclass
class Ruleset:
    """A host's rules: the document that loads them and each rule with its purpose."""

    syntax: str                    # "iptables" | "nft"
    document: str                  # iptables-restore input, or an nft -f script
    rules: list[RenderedRule] = field(default_factory=list)
    ipv6: "Ruleset | None" = None  # the IPv6 rules (ip6tables-restore input), when any


class Profile(Protocol):
    """An engine profile: renders a Docker host's firewall and loads it in the host's namespace.

    `load` loads it and returns the rule index of the host (every rule in the kernel, with its
    nft handle, number in its chain, text in the profile's syntax and purpose); `read` indexes
    again without loading.
    """

    name: str                      # docker2010 | docker29-iptables | docker29-nftables
    syntax: str                    # iptables | nft

    def render(self, lab: "Lab", host: "Host") -> Ruleset: ...

    def load(self, lab: "Lab", host: "Host", ruleset: Ruleset) -> list["FwRule"]: ...

    def read(self, lab: "Lab", host: "Host", ruleset: Ruleset) -> list["FwRule"]:
        """Index what the host's namespace holds now (after the lab's own entries too)."""
        ...

    def listing(self, host: "Host") -> tuple[str, str]:
        """(how it was listed, the host's rules as the kernel has them, in this syntax)."""
        ...


class IptablesDoc:
    """Builds an iptables-restore document table by table, each rule with its purpose.

    Chains are declared in the order given; rules keep the order they are added in, which is
    the order of their chain in the kernel (iptables-restore appends).
    """

    def __init__(self) -> None:
        self.policies: dict[str, dict[str, str]] = {}
        self.chains: dict[str, list[str]] = {}
        self.rules: dict[str, list[RenderedRule]] = {}

    def table(self, table: str, policies: dict[str, str], chains: list[str]) -> None:
        self.policies[table] = dict(policies)
        self.chains[table] = list(chains)
        self.rules.setdefault(table, [])

    def add(self, table: str, chain: str, spec: str, purpose: RulePurpose,
            network: str | None = None) -> None:
        self.rules[table].append(RenderedRule(table, chain, f"-A {chain} {spec}", purpose,
                                              network))

    def ruleset(self) -> Ruleset:
        lines: list[str] = []
        out: list[RenderedRule] = []
        for table in IPT_TABLES:
            if table not in self.policies:
                continue
            lines.append(f"*{table}")
            lines += [f":{c} {p} [0:0]" for c, p in self.policies[table].items()]
            lines += [f":{c} - [0:0]" for c in self.chains[table]]
            lines += [r.text for r in self.rules[table]]
            lines.append("COMMIT")
            out += self.rules[table]
        return Ruleset("iptables", "\n".join(lines) + "\n", out)


def builtin_policies(table: str, **policy: str) -> dict[str, str]:
    """ACCEPT for each built-in chain of `table`, except those given (FORWARD="DROP")."""
    return {c: policy.get(c, "ACCEPT") for c in BUILTIN_CHAINS[table]}


@dataclass
class Published:
    """One published port of a container, on the bridge network Docker maps it through."""

    container: str
    network: "object"              # nettrace.topology.model.Network
    ip: str                        # the container's address on that network
    proto: str                     # tcp | udp
    host_port: int
    port: int
    host_ip: str | None            # "127.0.0.1" for -p 127.0.0.1:8080:80; None or 0.0.0.0: any
    ip6: str | None = None         # the container's IPv6 address there (IPv6 network)


def bridges(lab: "Lab", host: "Host") -> list:
    """Bridge networks on `host`, oldest first (creation order)."""
    return [n for n in lab.networks if n.driver == "bridge" and n.host == host.name]


def published(lab: "Lab", host: "Host") -> list[Published]:
    """Published ports on `host`, container by container, in publish order."""
    out = []
    for sb in lab.sandboxes.values():
        if sb.host != host.name or not sb.published:
            continue
        nets = [lab.network(ep.network, host.name) for ep in sb.endpoints]
        target = next((n for n in nets if n.driver == "bridge" and not n.internal), None)
        if target is None:
            continue                      # internal, macvlan or host mode: Docker ignores them
        for port in sb.ports():
            out.append(Published(sb.name, target, sb.ip(target.name), port.proto,
                                 port.host_port, port.container_port, port.host_ip,
                                 sb.ip6(target.name)))
    return out


@dataclass(frozen=True)
class Family:
    """What differs between the IPv4 (iptables) and IPv6 (ip6tables) renderings."""

    version: int

    def subnet(self, net) -> str | None:
        return net.subnet if self.version == 4 else (net.subnet_v6 if net.ipv6 else None)

    def addr(self, ep) -> str | None:
        return ep.ipv4 if self.version == 4 else ep.ipv6

    def port_ip(self, p) -> str | None:
        """The container address a published port leads to in this family (None: not
        published here: a port bound to an IPv4 host address is IPv4 only)."""
        if self.version == 4:
            return p.ip
        if p.host_ip and ipaddress.ip_address(p.host_ip).version == 4:
            return None
        return p.ip6

    def mode(self, net):
        # com.docker.network.bridge.gateway_mode_ipv4 is IPv4's; IPv6 keeps nat
        from nettrace.topology.model import GatewayMode
        return net.gateway_mode if self.version == 4 else GatewayMode.NAT

    def host(self, ip: str) -> str:
        return f"{ip}/{32 if self.version == 4 else 128}"

    def endpoint(self, ip: str, port: int) -> str:
        return f"{ip}:{port}" if self.version == 4 else f"[{ip}]:{port}"

    def loopback(self, ip: str) -> bool:
        return ipaddress.ip_address(ip).is_loopback and ipaddress.ip_address(ip).version == self.version

    @property
    def loopback_net(self) -> str:
        return "127.0.0.0/8" if self.version == 4 else "::1/128"

    @property
    def icmp(self) -> str:
        return "icmp" if self.version == 4 else "ipv6-icmp"

    @property
    def nft(self) -> str:
        """The nft family and address keyword: ip / ip6."""
        return "ip" if self.version == 4 else "ip6"
