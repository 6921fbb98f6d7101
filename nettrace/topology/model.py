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
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: Every namespace a lab creates is named "<prefix>.<lab>.<...>" so that a lab's objects can
#: always be found, even after a crash. The prefix may be changed for isolated test runs.
NS_PREFIX = os.environ.get("NETTRACE_NS_PREFIX", "nt")
#: Where running labs are recorded.
STATE_DIR = os.environ.get("NETTRACE_STATE_DIR", "/run/nettrace")


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

    @property
    def label(self) -> str:
        """Short name a user recognises: c1:eth0, host1:docker0, host1:veth1a2b3c4."""
        owner = self.sandbox or self.host or "underlay"
        return f"{owner}:{self.ifname}"


@dataclass
class Endpoint:
    """Joins a sandbox to a network: a veth pair or a macvlan child."""

    name: str                      # Docker-style endpoint name, "<container>-<network>"
    container: str
    network: str
    ifname: str                    # name inside the sandbox: eth0, eth1, ...
    mac: str
    ipv4: str
    prefixlen: int
    mtu: int
    host_ifname: str | None = None  # veth host end (None for macvlan)
    host_netns: str | None = None   # where the host end lives (host ns, or overlay sandbox)


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

    def ip(self, network: str | None = None) -> str | None:
        for ep in self.endpoints:
            if network is None or ep.network == network:
                return ep.ipv4
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


@dataclass
class Host:
    """A simulated Docker host: a namespace with its own firewall and sysctls."""

    name: str
    netns: str
    uplink: str | None = None      # "eth0" on the underlay
    address: str | None = None     # underlay address, e.g. 192.168.50.11
    prefixlen: int = 24
    kind: str = "docker"           # docker | client


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
    source: str | None = None      # lab file or embedded name
    pid: int = 0                   # process that brought it up
    created: float = 0.0

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

    # -- persistence --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=_enum_value))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Lab":
        d = dict(d)
        d["hosts"] = {k: Host(**v) for k, v in d.get("hosts", {}).items()}
        d["clients"] = {k: Host(**v) for k, v in d.get("clients", {}).items()}
        d["networks"] = [Network(**{**n, "scope": Scope(n["scope"])}) for n in d.get("networks", [])]
        d["sandboxes"] = {
            k: Sandbox(**{**v, "endpoints": [Endpoint(**e) for e in v.get("endpoints", [])]})
            for k, v in d.get("sandboxes", {}).items()}
        d["interfaces"] = [Interface(**{**i, "role": Role(i["role"])}) for i in d.get("interfaces", [])]
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
