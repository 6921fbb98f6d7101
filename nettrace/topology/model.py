"""The live lab, in Docker's Container Network Model terms.

A `Lab` is what `Builder.up()` produced: hosts (network namespaces standing in for
Docker hosts), networks, sandboxes (containers) with their endpoints, external
clients, and every interface nettrace created with the role it plays. It is plain
data, saved as JSON under the state directory so another process (CLI, TUI, tracer)
can find a running lab and name what it sees.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from nettrace.topology.firewall.purposes import RulePurpose

#: Every namespace a lab creates is named "<prefix>.<lab>.<...>" so that a lab's objects can
#: always be found, even after a crash. The prefix may be changed for isolated test runs.
NS_PREFIX = os.environ.get("NETTRACE_NS_PREFIX", "nt")
#: Where running labs are recorded.
STATE_DIR = os.environ.get("NETTRACE_STATE_DIR", "/run/nettrace")
#: what VXLAN adds to a packet (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8): Docker's overlay
#: gives containers its mtu option less this (1500 -> 1450)
VXLAN_OVERHEAD = 50


def ns_name(lab: str, *parts: str) -> str:
    """Namespace name for a lab object: nt.<lab>.<part>[.<part>...]."""
    return ".".join((NS_PREFIX, lab) + parts)


def lab_of_ns(netns: str) -> str | None:
    """The lab a namespace belongs to, or None when it is not one of ours."""
    bits = netns.split(".")
    if len(bits) >= 3 and bits[0] == NS_PREFIX:
        return bits[1]
    return None


class Scope(str, Enum):
    LOCAL = "local"
    SWARM = "swarm"


class EngineVersion(str, Enum):
    """The Docker release whose behaviour a lab reproduces (firewall layout, routes, MACs)."""

    V29 = "29"                     # 28.x and 29.x: DOCKER-FORWARD/-CT/-BRIDGE/-INTERNAL, raw DROP
    V20_10 = "20.10"               # up to 27.x: DOCKER-ISOLATION-STAGE-1/2

    @classmethod
    def of_release(cls, release: str) -> "EngineVersion":
        """The profile of a Docker release string ("20.10.24+dfsg1", "29.0.1", "27.5.1").

        Releases up to 27 keep 20.10's rule layout; 28 introduced the layout 29 completed.
        Raises ValueError for a string that is no Docker release.
        """
        m = re.match(r"^v?(\d+)(?:\.(\d+))?", str(release).strip())
        if not m:
            raise ValueError(f"not a Docker release: {release!r}")
        return cls.V20_10 if int(m.group(1)) <= 27 else cls.V29


class FirewallBackend(str, Enum):
    """dockerd's --firewall-backend (Docker 29); 20.10 knows only iptables."""

    IPTABLES = "iptables"
    NFTABLES = "nftables"


class GatewayMode(str, Enum):
    """com.docker.network.bridge.gateway_mode_ipv4 (Docker 28+)."""

    NAT = "nat"
    NAT_UNPROTECTED = "nat-unprotected"
    ROUTED = "routed"
    ISOLATED = "isolated"


@dataclass(frozen=True)
class EngineProfile:
    """Which Docker engine a lab reproduces: `engine:` in a lab file, `lab up --engine ...`."""

    version: EngineVersion = EngineVersion.V29
    firewall: FirewallBackend = FirewallBackend.IPTABLES
    userland_proxy: bool = True
    ip6tables: bool | None = None      # daemon.json "ip6tables"; None: the release's default

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", EngineVersion(self.version))
        object.__setattr__(self, "firewall", FirewallBackend(self.firewall))

    @property
    def ip6tables_on(self) -> bool:
        """Whether the engine writes ip6tables rules: off by default in 20.10, on since 27."""
        return self.ip6tables if self.ip6tables is not None else \
            self.version is not EngineVersion.V20_10

    @property
    def internal_default_route(self) -> bool:
        """Docker 20.10's bridge driver gives containers on an internal network a default route
        via its gateway (recorded on the real engine); 28+ gives none."""
        return self.version is EngineVersion.V20_10

    def __str__(self) -> str:
        return (f"Docker {self.version.value}, {self.firewall.value} firewall, userland proxy "
                f"{'on' if self.userland_proxy else 'off'}")


@dataclass(frozen=True)
class PublishedPort:
    """One `-p [HOSTIP:]HOSTPORT:PORT[/PROTO]`; host_ip None means every address (0.0.0.0)."""

    host_port: int
    container_port: int
    proto: str = "tcp"
    host_ip: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.host_ip}:" if self.host_ip else ""
        return f"{prefix}{self.host_port}:{self.container_port}/{self.proto}"

    @classmethod
    def parse(cls, text: str) -> "PublishedPort":
        """"127.0.0.1:8080:80/tcp", "8080:80" (tcp); ValueError says what is wrong."""
        m = re.match(r"^(?:(\d+\.\d+\.\d+\.\d+):)?(\d+):(\d+)(?:/(tcp|udp))?$",
                     str(text).strip())
        if not m:
            raise ValueError(f"bad published port {text!r} "
                             f"(form: [HOSTIP:]HOSTPORT:PORT[/tcp|udp])")
        host_ip, hp, cp, proto = m.groups()
        for port in (int(hp), int(cp)):
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1..65535")
        if host_ip is not None:
            import ipaddress
            try:
                host_ip = str(ipaddress.IPv4Address(host_ip))
            except ValueError:
                raise ValueError(f"bad host IP {host_ip!r} in published port {text!r}") from None
            if host_ip == "0.0.0.0":
                host_ip = None             # Docker's default: every address
        return cls(int(hp), int(cp), proto or "tcp", host_ip)


class Role(str, Enum):
    """What an interface is, in the user's terms (used to name hops)."""

    CONTAINER = "container"        # eth0/eth1 inside a container (veth or macvlan child)
    VETH_HOST = "veth-host"        # host end of a container's veth pair (bridge port)
    BRIDGE = "bridge"              # docker0, br-<id>, docker_gwbridge, overlay br0
    VXLAN = "vxlan"                # vxlan0 in an overlay network sandbox
    MACVLAN_PARENT = "macvlan-parent"  # the veth end macvlan children hang off
    UPLINK = "uplink"              # a host's or client's interface on the underlay
    UNDERLAY = "underlay"          # the switch (bridge and ports) joining hosts and clients
    LOOPBACK = "loopback"


@dataclass
class Interface:
    """One kernel interface nettrace created, and who it belongs to."""

    netns: str                     # full namespace name
    ifname: str
    role: Role
    host: str | None = None        # Docker host it belongs to (None for the underlay)
    sandbox: str | None = None     # container name, overlay sandbox, or client name
    network: str | None = None     # network it serves
    kind: str = ""                 # veth, bridge, vxlan, macvlan
    mac: str | None = None
    peer: str | None = None        # "netns/ifname" of a veth peer


@dataclass
class Endpoint:
    """Joins a sandbox to a network: a veth pair or a macvlan child."""

    name: str                      # Docker-style endpoint name, "<container>-<network>"
    container: str
    network: str
    ifname: str                    # name inside the sandbox: eth0, eth1, ...
    mac: str
    ipv4: str | None               # None on an IPv6-only network
    prefixlen: int
    mtu: int
    host_ifname: str | None = None  # veth host end (None for macvlan)
    host_netns: str | None = None   # where the host end lives (host ns, or overlay sandbox)
    ipv6: str | None = None         # global IPv6 address on an IPv6 network
    prefixlen6: int | None = None


@dataclass
class Sandbox:
    """A container's network namespace (Docker's Sandbox)."""

    name: str                      # container name
    host: str
    netns: str                     # shared with the host for the host driver
    endpoints: list[Endpoint] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)   # "default via 172.17.0.1 dev eth0"
    resolv_conf: str = ""
    published: list[str] = field(default_factory=list)  # "8080:80/tcp"
    network_mode: str = "bridge"   # bridge | host | none | <network>
    hostname: str = ""             # as Docker sets it: the container id's first 12 hex digits
    etc_hosts: str = ""            # /etc/hosts as Docker writes it for this container
    listen: list[str] = field(default_factory=list)     # "tcp/80": sockets listening inside

    def ports(self) -> list[PublishedPort]:
        """`published`, parsed."""
        return [PublishedPort.parse(p) for p in self.published]

    def ip(self, network: str | None = None) -> str | None:
        for ep in self.endpoints:
            if (network is None or ep.network == network) and ep.ipv4:
                return ep.ipv4
        return None

    def ip6(self, network: str | None = None) -> str | None:
        for ep in self.endpoints:
            if (network is None or ep.network == network) and ep.ipv6:
                return ep.ipv6
        return None


@dataclass
class Network:
    """A set of endpoints that reach each other, made by a network driver."""

    name: str
    driver: str                    # bridge | host | null | macvlan | overlay | ipvlan
    scope: Scope
    id: str                        # 64 hex digits, like Docker's
    host: str | None               # owning host for local scope, None for swarm scope
    subnet: str | None = None
    gateway: str | None = None
    device: str | None = None      # bridge name (docker0, br-<id12>), macvlan parent, or br0
    netns: str | None = None       # namespace holding the device (host ns or overlay sandbox)
    mtu: int = 1500
    icc: bool = True
    internal: bool = False
    masquerade: bool = True
    vni: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    gateway_mode: GatewayMode = GatewayMode.NAT   # com.docker.network.bridge.gateway_mode_ipv4
    host_ipv4: str | None = None   # com.docker.network.host_ipv4: SNAT to it, not MASQUERADE
    ipv4: bool = True              # False: IPv6-only network (Docker 28+)
    ipv6: bool = False
    subnet_v6: str | None = None
    gateway_v6: str | None = None


@dataclass
class Host:
    """A simulated Docker host: a namespace with its own firewall and sysctls."""

    name: str
    netns: str
    uplink: str | None = None      # "eth0" on the underlay
    address: str | None = None     # underlay address, e.g. 192.168.50.11
    prefixlen: int = 24
    kind: str = "docker"           # docker | client
    address6: str | None = None    # underlay IPv6 address (labs with IPv6 networks)
    sysctls: dict[str, str] = field(default_factory=dict)   # set by the lab after Docker's own
    firewall: list[str] = field(default_factory=list)       # lab's iptables entries, in order
    firewall6: list[str] = field(default_factory=list)      # lab's ip6tables entries, in order
    routes: list[str] = field(default_factory=list)         # lab's routes "CIDR via host2|IP"


@dataclass
class FwRule:
    """One firewall rule in the kernel, as the rule index records it (firewall/index.py)."""

    host: str                      # Docker host (or container, for its embedded DNS rules)
    family: str                    # ip | ip6 | inet
    table: str                     # filter | nat | raw | docker-bridges ...
    chain: str
    handle: int                    # nft handle: what `nft monitor trace` reports
    number: int                    # 1-based position in its chain
    text: str                      # in the profile's syntax: "-A DOCKER ! -i br0 -o br0 -j DROP"
    purpose: RulePurpose           # why Docker installs it
    network: str | None = None     # the network it was rendered for


@dataclass
class Lab:
    name: str
    hosts: dict[str, Host] = field(default_factory=dict)      # Docker hosts
    clients: dict[str, Host] = field(default_factory=dict)    # external machines on the uplink
    networks: list[Network] = field(default_factory=list)
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    interfaces: list[Interface] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)       # every netns created, in order
    underlay_netns: str | None = None
    underlay_subnet: str | None = None
    underlay_mtu: int = 1500       # MTU of the link hosts and clients share
    source: str | None = None      # lab file or embedded name
    pid: int = 0                   # process that brought it up
    created: float = 0.0
    engine: EngineProfile = field(default_factory=EngineProfile)
    rules: list[FwRule] = field(default_factory=list)   # the rule index, every host's rules

    # -- lookups ------------------------------------------------------------------------
    def network(self, name: str, host: str | None = None) -> Network:
        for net in self.networks:
            if net.name == name and (host is None or net.host in (None, host)):
                return net
        raise KeyError(name)

    def sandbox(self, name: str) -> Sandbox:
        return self.sandboxes[name]

    def node(self, name: str) -> Sandbox | Host:
        """A container, Docker host or external client by name."""
        if name in self.sandboxes:
            return self.sandboxes[name]
        if name in self.clients:
            return self.clients[name]
        return self.hosts[name]

    def netns_of(self, name: str) -> str:
        return self.node(name).netns

    def interface(self, netns: str, ifname: str) -> Interface | None:
        for itf in self.interfaces:
            if itf.netns == netns and itf.ifname == ifname:
                return itf
        return None

    def rule_for(self, host: str, family: str, table: str, chain: str,
                 handle: int | None) -> FwRule | None:
        """The indexed rule with this nft handle (None when unknown, e.g. a policy verdict)."""
        if handle is None:
            return None
        for r in self.rules:
            if (r.handle == handle and r.host == host and r.family == family
                    and r.table == table and r.chain == chain):
                return r
        return None

    def owner_of_netns(self, netns: str) -> str | None:
        """The Docker host or container whose namespace this is (hosts first)."""
        for h in self.hosts.values():
            if h.netns == netns:
                return h.name
        for sb in self.sandboxes.values():
            if sb.netns == netns:
                return sb.name
        return None

    # -- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=_enum_value))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Lab":
        d = dict(d)
        d["hosts"] = {k: Host(**v) for k, v in d.get("hosts", {}).items()}
        d["clients"] = {k: Host(**v) for k, v in d.get("clients", {}).items()}
        d["networks"] = [Network(**{**n, "scope": Scope(n["scope"]),
                                    "gateway_mode": GatewayMode(n.get("gateway_mode", "nat"))})
                         for n in d.get("networks", [])]
        d["engine"] = EngineProfile(**d.get("engine", {}))
        d["sandboxes"] = {
            k: Sandbox(**{**v, "endpoints": [Endpoint(**e) for e in v.get("endpoints", [])]})
            for k, v in d.get("sandboxes", {}).items()}
        d["interfaces"] = [Interface(**{**i, "role": Role(i["role"])}) for i in d.get("interfaces", [])]
        d["rules"] = [FwRule(**{**r, "purpose": RulePurpose(r["purpose"])})
                      for r in d.get("rules", [])]
        return cls(**d)

    def state_path(self) -> str:
        return os.path.join(STATE_DIR, f"{self.name}.json")

    def save(self) -> str:
        os.makedirs(STATE_DIR, exist_ok=True)
        path = self.state_path()
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
        return path


def _enum_value(obj: Any) -> Any:
    if isinstance(obj, Enum):
        return obj.value
    raise TypeError(type(obj))


def load_lab(name: str) -> Lab:
    """The running lab called `name`, from its state file."""
    from nettrace.errors import NettraceError
    path = os.path.join(STATE_DIR, f"{name}.json")
    try:
        with open(path) as f:
            return Lab.from_dict(json.load(f))
    except FileNotFoundError:
        raise NettraceError(f"no running lab named '{name}' (no {path}); "
                            f"start it with: nettrace lab up {name}") from None


def running_labs() -> list[str]:
    try:
        return sorted(f[:-5] for f in os.listdir(STATE_DIR) if f.endswith(".json"))
    except FileNotFoundError:
        return []
