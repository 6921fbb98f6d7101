"""Lab files: a declaration of hosts, networks and containers, checked before the kernel is touched.

A `LabSpec` is pure data (mininet's Topo idea): it is loaded from YAML, validated, printed and
diffed without root. Every error names the file, line and field, because lab files are written
by hand. Building the lab is `nettrace.topology.builder`'s job.

Format (all keys but `containers` optional)::

    name: mylab
    engine:                        # the Docker engine reproduced (lab up --engine/--firewall override)
      version: "29"                # "29" (28.x, 29.x) | "20.10" (up to 27.x)
      firewall: iptables           # iptables | nftables (29 only)
      ip6tables: true              # daemon.json "ip6tables" (default: off in 20.10, on in 29)
      userland_proxy: true         # docker-proxy per published port (dockerd --userland-proxy)
    hosts: [host1, host2]          # simulated Docker hosts; default: one host called "host"
    # a host may also be a mapping: sysctls set in its namespace after Docker's own, and
    # firewall entries (the arguments of one `iptables` command each, `-t TABLE` allowed)
    # applied in order after Docker's rules, and static routes via another host or client
    #   hosts: [{name: h1, sysctls: {net.ipv4.ip_forward: 0},
    #            firewall: ["-I DOCKER-USER -s 10.0.0.2 -j DROP"],
    #            firewall6: ["-P FORWARD DROP"],          # ip6tables entries, the same way
    #            routes: ["10.60.0.0/24 via h2"]}]
    underlay: {mtu: 1400}          # the link hosts and clients share (default 1500)
    clients: [client]              # external machines on the hosts' uplink (underlay);
                                   # mappings like hosts' ({name, routes, sysctls, firewall})
    networks:
      - name: unet
        driver: bridge             # bridge | macvlan | overlay | ipvlan (host, none are built in)
        subnet: 10.99.0.0/24       # default: the next free pool, as Docker's IPAM picks it
        gateway: 10.99.0.1
        host: host1                # local scope: which host (default: every host... the first)
        icc: true                  # inter-container communication
        internal: false            # no egress, no NAT, no published ports
        masquerade: true
        mtu: 1500
        bridge_name: br-custom     # com.docker.network.bridge.name
        gateway_mode: nat          # nat | nat-unprotected | routed | isolated
                                   #   (com.docker.network.bridge.gateway_mode_ipv4)
        host_ipv4: 192.168.50.11   # com.docker.network.host_ipv4: SNAT source instead of MASQUERADE
        parent: mvparent           # macvlan: parent interface on the host (default: a veth end)
        mode: bridge               # macvlan mode
        vni: 4097                  # overlay VXLAN id (default: first free from 4096)
        ipv6: true                 # dual stack (com.docker.network.enable_ipv6)
        subnet_v6: fd00:10::/64    # default: a /64 of the host's ULA /48, as Docker's IPAM does
        gateway_v6: fd00:10::1
        ipv4: false                # IPv6-only network (Docker 28+; needs ipv6: true)
    containers:
      - name: c1
        host: host1
        networks: [unet, {name: bridge, ip: 172.17.0.10, ip6: "fd00:10::10"}]   # or "host" / "none"
        publish: ["8080:80/tcp", "127.0.0.1:8081:81/udp"]   # [HOSTIP:]HOSTPORT:PORT[/PROTO]
        listen: ["tcp/80", "udp/53"]   # a real listening socket in the container's namespace
    # for fault labs (ignored by the builder): the flow to trace and the expected diagnosis
    trace: {src: c1, dst: c2, proto: tcp, dport: 80, size: 1400, df: true}
    expect: {cause: icc-disabled}

Docker's option names (com.docker.network.bridge.enable_icc, ...) are accepted for the short
keys, directly or under `options:`, with Docker's string values ("false", "0", "1500").
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from nettrace.errors import SpecError
from nettrace.topology.model import (EngineProfile, EngineVersion, FirewallBackend, GatewayMode,
                                     PublishedPort)
from nettrace.inputs import LineList, LineMap, read_text, read_yaml

DRIVERS = ("bridge", "host", "null", "macvlan", "overlay", "ipvlan")
DRIVER_ALIASES = {"none": "null", "default": "bridge"}
BUILTIN_NETWORKS = {"bridge": "bridge", "host": "host", "none": "null"}
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
IFNAMSIZ = 15
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")
MAX_NAME = 24    # names end up in namespace names and Docker-style link names
# Size limits of one lab (the file itself is capped at 1 MiB by nettrace.inputs). A Linux
# bridge takes at most 1024 ports, so 1,000 containers fit on any one network.
MAX_CONTAINERS = 1000
MAX_NETWORKS = 256
MAX_NODES = 64              # hosts + clients: each is a namespace and a port on the underlay
# Interface names a host namespace already has (or nettrace gives to its own devices).
RESERVED_IFNAMES = {"lo", "eth0", "lan0", "docker0", "docker_gwbridge", "mvparent", "br0",
                    "vxlan0"}

# Docker option names accepted as aliases of the short keys.
OPTION_ALIASES = {
    "com.docker.network.bridge.enable_icc": "icc",
    "com.docker.network.bridge.enable_ip_masquerade": "masquerade",
    "com.docker.network.bridge.name": "bridge_name",
    "com.docker.network.driver.mtu": "mtu",
    "com.docker.network.driver.overlay.vxlanid_list": "vni",
    "macvlan_mode": "mode",
    "com.docker.network.bridge.gateway_mode_ipv4": "gateway_mode",
    "com.docker.network.host_ipv4": "host_ipv4",
    "com.docker.network.enable_ipv6": "ipv6",
    "com.docker.network.enable_ipv4": "ipv4",
}
NETWORK_KEYS = {"name", "driver", "subnet", "gateway", "host", "icc", "internal", "masquerade",
                "mtu", "bridge_name", "parent", "mode", "vni", "options", "gateway_mode",
                "host_ipv4", "ipv4", "ipv6", "subnet_v6", "gateway_v6"}
CONTAINER_KEYS = {"name", "host", "networks", "publish", "ip", "listen"}
TOP_KEYS = {"name", "description", "hosts", "clients", "networks", "containers", "engine",
            "underlay", "trace", "expect"}
ENGINE_KEYS = {"version", "firewall", "userland_proxy", "ip6tables"}
# strconv.ParseBool, which Docker uses for its string-valued options
TRUE_STRINGS = ("1", "t", "T", "TRUE", "true", "True")
FALSE_STRINGS = ("0", "f", "F", "FALSE", "false", "False")
HOST_KEYS = {"name", "sysctls", "firewall", "firewall6", "routes"}
ROUTE_RE = re.compile(r"^(\S+)\s+via\s+(\S+)$")
UNDERLAY_KEYS = {"mtu"}
TRACE_KEYS = {"src", "dst", "proto", "dport", "size", "df"}
TRACE_PROTOS = ("icmp", "udp", "tcp")
EXPECT_KEYS = {"cause", "fixed", "stage"}
EXPECT_STAGES = ("request", "after-nat", "reply")
CAUSE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
# per-namespace sysctls only: nettrace never writes the root namespace's
SYSCTL_RE = re.compile(r"^net\.(ipv4|ipv6|bridge|core|netfilter|unix)(\.[A-Za-z0-9_*-]+)+$")
IPTABLES_TABLES = ("filter", "nat", "raw", "mangle", "security")
IPTABLES_COMMANDS = {"-A": "append", "--append": "append", "-I": "insert", "--insert": "insert",
                     "-D": "delete", "--delete": "delete", "-R": "replace", "--replace": "replace",
                     "-P": "policy", "--policy": "policy", "-N": "new-chain",
                     "--new-chain": "new-chain", "-F": "flush", "--flush": "flush"}
LISTEN_RE = re.compile(r"^(tcp|udp)/(\d+)$")


@dataclass(frozen=True)
class Where:
    file: str
    line: int | None = None

    def error(self, field_name: str | None, message: str) -> SpecError:
        return SpecError(message, file=self.file, line=self.line, field=field_name)


@dataclass
class NetworkSpec:
    name: str
    driver: str
    where: Where
    subnet: str | None = None
    gateway: str | None = None
    host: str | None = None
    icc: bool = True
    internal: bool = False
    masquerade: bool = True
    mtu: int | None = None
    bridge_name: str | None = None
    parent: str | None = None
    mode: str = "bridge"
    vni: int | None = None
    gateway_mode: GatewayMode = GatewayMode.NAT
    host_ipv4: str | None = None
    builtin: bool = False
    ipv4: bool = True
    ipv6: bool = False
    subnet_v6: str | None = None
    gateway_v6: str | None = None

    @property
    def scope(self) -> str:
        return "swarm" if self.driver == "overlay" else "local"


@dataclass
class Attachment:
    network: str
    ip: str | None = None
    where: Where | None = None
    ip6: str | None = None


#: A published port as a lab file writes it (the model's type: one parser, one printer).
PortSpec = PublishedPort


@dataclass
class ContainerSpec:
    name: str
    host: str
    where: Where
    networks: list[Attachment] = field(default_factory=list)
    publish: list[PortSpec] = field(default_factory=list)
    listen: list[str] = field(default_factory=list)      # "tcp/80": a listening socket

    @property
    def mode(self) -> str:
        """Docker's network mode: host, none, or bridge-like (joined networks)."""
        if len(self.networks) == 1 and self.networks[0].network in ("host", "none"):
            return self.networks[0].network
        return "bridge"


@dataclass
class HostSpec:
    """What a lab says about one Docker host beyond its name."""

    name: str
    where: Where
    sysctls: dict[str, str] = field(default_factory=dict)   # set after Docker's own
    firewall: list[str] = field(default_factory=list)       # iptables arguments, in order
    firewall_where: list[Where] = field(default_factory=list)
    firewall6: list[str] = field(default_factory=list)      # ip6tables arguments, in order
    firewall6_where: list[Where] = field(default_factory=list)
    sysctls_where: dict[str, Where] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)         # "10.60.0.0/24 via host2"
    routes_where: list[Where] = field(default_factory=list)
    field: str = ""                                         # "hosts[1]" or "clients[0]"


@dataclass
class TraceSpec:
    """The flow a fault lab is about (what `nettrace path` would be asked)."""

    src: str
    dst: str                          # container, host or client name, IP, or IP:PORT
    proto: str = "icmp"
    dport: int | None = None
    size: int | None = None           # IP packet size in bytes
    df: bool = False

    def path_args(self) -> list[str]:
        """`nettrace path LAB` arguments that trace this flow."""
        args = [self.src, self.dst]
        if self.proto != "icmp" and not (self.proto == "tcp" and ":" in self.dst):
            args += ["--proto", self.proto]
        if self.dport:
            args += ["--dport", str(self.dport)]
        if self.size:
            args += ["--size", str(self.size)]
        if self.df:
            args.append("--df")
        return args


@dataclass
class ExpectSpec:
    cause: str                        # a diagnosis cause code
    fixed: str = "ok"                 # the cause once a fix is applied (a fix for
                                      # bridge-netfilter-disabled restores the expected drop)
    stage: str = "request"            # where it goes wrong: the request, the request after
                                      # a NAT, or the reply (the request was fine)


@dataclass
class LabSpec:
    name: str
    file: str
    hosts: list[str]
    clients: list[str] = field(default_factory=list)
    networks: list[NetworkSpec] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)
    description: str = ""
    engine: EngineProfile = field(default_factory=EngineProfile)
    host_specs: dict[str, HostSpec] = field(default_factory=dict)   # hosts and clients by name
    underlay_mtu: int | None = None
    trace: TraceSpec | None = None    # fault labs: ignored by the builder
    expect: ExpectSpec | None = None

    def network(self, name: str, host: str | None = None) -> NetworkSpec:
        for net in self.networks:
            if net.name == name and (net.host is None or host is None or net.host == host):
                return net
        raise KeyError(name)

    @property
    def needs_underlay(self) -> bool:
        return bool(self.clients) or len(self.hosts) > 1


# -- YAML with line numbers (and input limits: nettrace.inputs) ---------------------------

_Map, _List = LineMap, LineList         # mappings/sequences with .line and .lines


def _read_yaml(text: str, file: str) -> Any:
    def error(message: str, line: int | None = None) -> SpecError:
        return SpecError(message, file=file, line=line)
    doc = read_yaml(text, error)
    if doc is None:
        raise SpecError("the file is empty", file=file)
    return doc


# -- loading ----------------------------------------------------------------------------

def embedded_labs() -> dict[str, str]:
    """Embedded lab name -> YAML path (shipped with the package)."""
    labs_dir = os.path.join(os.path.dirname(__file__), "labs")
    return {f[:-5]: os.path.join(labs_dir, f) for f in sorted(os.listdir(labs_dir))
            if f.endswith(".yaml")}


FAULTS_PREFIX = "faults/"


def fault_labs() -> dict[str, str]:
    """The fault catalogue: "faults/<name>" -> YAML path (labs/faults/, shipped with the
    package). Each names the flow to trace (`trace:`) and the cause it shows (`expect:`)."""
    faults_dir = os.path.join(os.path.dirname(__file__), "labs", "faults")
    try:
        files = sorted(os.listdir(faults_dir))
    except FileNotFoundError:
        return {}
    return {FAULTS_PREFIX + f[:-5]: os.path.join(faults_dir, f)
            for f in sorted(files, key=lambda f: f[:-5]) if f.endswith(".yaml")}


def load(ref: str, *, name: str | None = None) -> LabSpec:
    """Load a lab from a file path, an embedded lab name or a catalogue fault
    (faults/<name>), and validate it."""
    labs = embedded_labs()
    faults = fault_labs()
    if ref.startswith(FAULTS_PREFIX) and not os.path.lexists(ref):
        if ref not in faults:
            raise SpecError(f"no fault lab called '{ref}' (nettrace lab ls --faults lists them)",
                            file=ref)
        path, default_name = faults[ref], ref[len(FAULTS_PREFIX):]
    elif os.path.lexists(ref) or ref.endswith((".yaml", ".yml")) or os.sep in ref:
        path = ref
        default_name = os.path.splitext(os.path.basename(path))[0]
    elif ref in labs:
        path, default_name = labs[ref], ref
    else:
        raise SpecError(f"no lab file and no embedded lab called '{ref}' "
                        f"(embedded: {', '.join(labs)})", file=ref)
    text = read_text(path, "lab file", lambda message, line=None: SpecError(
        message, file=path, line=line))
    return parse(text, file=path, default_name=default_name, force_name=name)


def parse(text: str, *, file: str = "<lab>", default_name: str = "lab",
          force_name: str | None = None) -> LabSpec:
    doc = _read_yaml(text, file)
    if not isinstance(doc, dict):
        raise SpecError("a lab file is a mapping (name, hosts, networks, containers)", file=file,
                        line=getattr(doc, "line", 1))
    top = Where(file, 1)
    _check_keys(doc, TOP_KEYS, file, "")
    if force_name is not None:                   # --name: checked like the file's own name
        name, name_where, name_field = force_name, Where("--name"), None
    else:
        name = doc["name"] if "name" in doc else default_name
        name_where, name_field = Where(file, doc.lines.get("name", 1)), "name"
    _check_name(name, name_where, name_field)

    hosts = _names(doc.get("hosts"), file, doc.lines.get("hosts"), "hosts") or ["host"]
    host_specs = {h.name: h for h in _host_specs(doc.get("hosts"), file, hosts, "hosts")}
    clients = _names(doc.get("clients"), file, doc.lines.get("clients"), "clients")
    if len(hosts) + len(clients) > MAX_NODES:
        raise Where(file, doc.lines.get("hosts") or doc.lines.get("clients")).error(
            "hosts", f"{len(hosts) + len(clients)} hosts and clients; a lab may have at most "
                     f"{MAX_NODES}")
    host_specs.update({c.name: c for c in _host_specs(doc.get("clients"), file, clients,
                                                       "clients")})
    seen: dict[str, str] = {}
    for kind, names, key in (("host", hosts, "hosts"), ("client", clients, "clients")):
        for n in names:
            if n in seen:
                raise Where(file, doc.lines.get(key)).error(key, f"duplicate name '{n}'")
            seen[n] = kind

    networks = [_builtin(n, d, top) for n, d in BUILTIN_NETWORKS.items()]
    raw_nets = doc.get("networks") or []
    if not isinstance(raw_nets, list):
        raise Where(file, doc.lines.get("networks")).error("networks", "must be a list")
    if len(raw_nets) > MAX_NETWORKS:
        raise Where(file, doc.lines.get("networks")).error(
            "networks", f"{len(raw_nets):,} networks; a lab may have at most {MAX_NETWORKS}")
    for i, raw in enumerate(raw_nets):
        networks.append(_network(raw, Where(file, raw_nets.lines[i]), i, hosts))
    user = [n for n in networks if not n.builtin]
    for i, net in enumerate(user):
        if net.name in BUILTIN_NETWORKS:
            raise net.where.error(f"networks[{i}].name",
                                  f"'{net.name}' is a built-in network and cannot be redefined")
        for other in user[:i]:
            if other.name == net.name:
                raise net.where.error(f"networks[{i}].name", f"duplicate network name '{net.name}'")

    raw_ctrs = doc.get("containers") or _List()
    if not isinstance(raw_ctrs, list):
        raise Where(file, doc.lines.get("containers")).error("containers", "must be a list")
    if len(raw_ctrs) > MAX_CONTAINERS:
        raise Where(file, doc.lines.get("containers")).error(
            "containers", f"{len(raw_ctrs):,} containers; a lab may have at most "
                          f"{MAX_CONTAINERS:,}")
    containers = []
    for i, raw in enumerate(raw_ctrs):
        ctr = _container(raw, Where(file, raw_ctrs.lines[i]), i, hosts, networks)
        if ctr.name in seen:
            raise ctr.where.error(f"containers[{i}].name", f"duplicate name '{ctr.name}'")
        seen[ctr.name] = "container"
        containers.append(ctr)

    spec = LabSpec(name=name, file=file, hosts=hosts, clients=clients, networks=networks,
                   containers=containers, description=str(doc.get("description") or ""),
                   engine=_engine(doc.get("engine"), Where(file, doc.lines.get("engine", 1))),
                   host_specs=host_specs, underlay_mtu=_underlay(doc, file))
    _check_subnets(spec)
    _check_bridge_names(spec)
    check_engine_support(spec)
    _check_addresses(spec)
    _check_ports(spec)
    _check_routes(spec)
    spec.trace = _trace(doc, file, seen)
    spec.expect = _expect(doc, file)
    if "containers" not in doc:                  # the format's one required key
        raise top.error("containers", "missing: a lab file lists its containers "
                        "(containers: [] for none)")
    return spec


def parse_bool(value: Any) -> bool:
    """A YAML boolean, or a string Docker's strconv.ParseBool accepts ("false", "0", "T")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip() in TRUE_STRINGS + FALSE_STRINGS:
        return value.strip() in TRUE_STRINGS
    raise ValueError(f"must be true or false, not {value!r}")


def _engine(raw: Any, where: Where) -> EngineProfile:
    """The `engine:` block: version "29" | "20.10", firewall iptables | nftables, userland_proxy."""
    if raw is None:
        return EngineProfile()
    if not isinstance(raw, dict):
        raise where.error("engine", "must be a mapping: {version: \"29\", firewall: iptables, "
                          "userland_proxy: true}")
    _check_keys(raw, ENGINE_KEYS, where.file, "engine.", aliases=False)
    at = lambda key: Where(where.file, raw.lines.get(key, where.line))  # noqa: E731
    version, firewall = EngineVersion.V29, FirewallBackend.IPTABLES
    if "version" in raw:
        version = engine_version(raw["version"], at("version"), "engine.version")
    if "firewall" in raw:
        try:
            firewall = FirewallBackend(str(raw["firewall"]))
        except ValueError:
            raise at("firewall").error("engine.firewall", f"unknown firewall backend "
                                       f"{raw['firewall']!r} (known: iptables, nftables)") from None
    if firewall is FirewallBackend.NFTABLES and version is EngineVersion.V20_10:
        raise at("firewall").error("engine.firewall", "Docker 20.10 has no nftables backend "
                                   "(it came with 29): use iptables, or version \"29\"")
    proxy = True
    if "userland_proxy" in raw:
        try:
            proxy = parse_bool(raw["userland_proxy"])
        except ValueError as exc:
            raise at("userland_proxy").error("engine.userland_proxy", str(exc)) from None
    ip6tables = None
    if "ip6tables" in raw:
        try:
            ip6tables = parse_bool(raw["ip6tables"])
        except ValueError as exc:
            raise at("ip6tables").error("engine.ip6tables", str(exc)) from None
    return EngineProfile(version=version, firewall=firewall, userland_proxy=proxy,
                         ip6tables=ip6tables)


def engine_version(value: Any, where: Where, field_name: str) -> EngineVersion:
    """"29", 29, "29.0.1", "20.10", "20.10.24" (YAML reads an unquoted 20.10 as 20.1: accepted)."""
    text = str(value)
    if isinstance(value, float) and text == "20.1":
        text = "20.10"
    if re.match(r"^29(\.\d+){0,2}$", text):
        return EngineVersion.V29
    if re.match(r"^20\.10(\.\d+)?$", text):
        return EngineVersion.V20_10
    raise where.error(field_name, f"unknown engine version {value!r} (profiles: \"29\", \"20.10\")")


def _host_specs(value: Any, file: str, hosts: list[str], key: str) -> list[HostSpec]:
    """One HostSpec per host (or client); those written as mappings carry sysctls, firewall
    entries and static routes."""
    items = value if isinstance(value, list) else []
    out = []
    for i, name in enumerate(hosts):
        raw = items[i] if i < len(items) else name
        where = Where(file, items.lines[i] if i < len(items) else None)
        f = f"{key}[{i}]"
        host = HostSpec(name=name, where=where, field=f)
        out.append(host)
        if not isinstance(raw, dict):
            continue

        def at(key: str, raw: dict = raw, where: Where = where) -> Where:
            return Where(file, raw.lines.get(key, where.line))
        _check_keys(raw, HOST_KEYS, file, f + ".", aliases=False)
        sysctls = raw.get("sysctls")
        if sysctls is not None:
            if not isinstance(sysctls, dict):
                raise at("sysctls").error(f"{f}.sysctls", "must be a mapping of sysctl: value")
            for key, val in sysctls.items():
                kw = Where(file, sysctls.lines.get(key, at("sysctls").line))
                if not SYSCTL_RE.match(key):
                    raise kw.error(f"{f}.sysctls.{key}", "not a per-namespace network sysctl "
                                   "(net.ipv4.*, net.ipv6.*, net.bridge.*, net.core.*, "
                                   "net.netfilter.*)")
                if isinstance(val, bool):
                    val = int(val)
                if not isinstance(val, (int, str)) or str(val).strip() == "" or "\n" in str(val):
                    raise kw.error(f"{f}.sysctls.{key}", f"bad value {val!r}: a number or a word")
                host.sysctls[key] = str(val)
                host.sysctls_where[key] = kw
        for key, entries, wheres in (("firewall", host.firewall, host.firewall_where),
                                     ("firewall6", host.firewall6, host.firewall6_where)):
            fw = raw.get(key)
            if fw is None:
                continue
            if not isinstance(fw, list):
                raise at(key).error(f"{f}.{key}", f"must be a list of "
                                    f"{'ip6tables' if key == 'firewall6' else 'iptables'} "
                                    "arguments, one command each")
            for j, entry in enumerate(fw):
                ew = Where(file, fw.lines[j])
                check_iptables_args(entry, ew, f"{f}.{key}[{j}]")
                entries.append(str(entry))
                wheres.append(ew)
        routes = raw.get("routes")
        if routes is not None:
            if not isinstance(routes, list):
                raise at("routes").error(f"{f}.routes", "must be a list like "
                                         "[\"10.60.0.0/24 via host2\"]")
            for j, entry in enumerate(routes):
                rw = Where(file, routes.lines[j])
                m = ROUTE_RE.match(str(entry).strip())
                if not m:
                    raise rw.error(f"{f}.routes[{j}]", f"bad route {entry!r} (form: "
                                   f"CIDR via HOST|CLIENT|IPv4)")
                try:
                    ipaddress.IPv4Network(m.group(1), strict=True)
                except ValueError as exc:
                    raise rw.error(f"{f}.routes[{j}]", f"bad CIDR '{m.group(1)}': {exc}") \
                        from None
                host.routes.append(f"{m.group(1)} via {m.group(2)}")
                host.routes_where.append(rw)
    return out


def _check_routes(spec: LabSpec) -> None:
    """A route's gateway is a host or client of the lab (or an address) on the underlay."""
    for node in spec.host_specs.values():
        for j, (route, where) in enumerate(zip(node.routes, node.routes_where)):
            via = route.split(" via ")[1]
            if not spec.needs_underlay:
                raise where.error(f"{node.field}.routes[{j}]", "routes go through the underlay: "
                                  "the lab needs clients or a second host")
            if via == node.name:
                raise where.error(f"{node.field}.routes[{j}]", "a route via itself")
            if via not in spec.host_specs:
                try:
                    ipaddress.IPv4Address(via)
                except ValueError:
                    raise where.error(f"{node.field}.routes[{j}]", f"unknown gateway '{via}' "
                                      f"(a host or client name, or an IPv4 address)") from None


def check_iptables_args(entry: Any, where: Where, f: str) -> list[str]:
    """The argv of one `iptables` command, checked as far as can be without running it."""
    import shlex
    if not isinstance(entry, str) or not entry.strip():
        raise where.error(f, "each entry is the arguments of one iptables command, as a string")
    try:
        argv = shlex.split(entry)
    except ValueError as exc:
        raise where.error(f, f"cannot split {entry!r}: {exc}") from None
    if argv and argv[0] in ("iptables", "ip6tables"):
        raise where.error(f, "give the arguments only, without the 'iptables' command")
    table, commands, i = "filter", [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("-t", "--table"):
            if i + 1 >= len(argv) or argv[i + 1] not in IPTABLES_TABLES:
                raise where.error(f, f"-t needs a table ({', '.join(IPTABLES_TABLES)})")
            table = argv[i + 1]
        elif a in IPTABLES_COMMANDS:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise where.error(f, f"{a} needs a chain name")
            commands.append((IPTABLES_COMMANDS[a], argv[i + 1], i))
        elif a.startswith("-") and not a.startswith("--") and len(a) > 2 and a[1] in "AIDRPNF":
            raise where.error(f, f"write the command and the chain apart: '{a[:2]} {a[2:]}'")
        i += 1
    if len(commands) != 1:
        raise where.error(f, "must hold exactly one command (-A, -I, -D, -R, -P, -N or -F) "
                          "and its chain, e.g. '-I DOCKER-USER -s 10.0.0.2 -j DROP'")
    kind, _chain, pos = commands[0]
    if kind == "policy":
        rest = argv[pos + 2:]
        if rest not in (["ACCEPT"], ["DROP"]):
            raise where.error(f, "-P CHAIN takes ACCEPT or DROP and nothing else")
    elif kind in ("append", "insert", "replace") and not any(a in ("-j", "--jump", "-g", "--goto")
                                                               for a in argv):
        raise where.error(f, f"a rule needs a target (-j ACCEPT, -j DROP, ...) in table {table}")
    return argv


def _underlay(doc: dict, file: str) -> int | None:
    raw = doc.get("underlay")
    if raw is None:
        return None
    where = Where(file, doc.lines.get("underlay"))
    if not isinstance(raw, dict):
        raise where.error("underlay", "must be a mapping, e.g. {mtu: 1400}")
    _check_keys(raw, UNDERLAY_KEYS, file, "underlay.", aliases=False)
    if "mtu" not in raw:
        return None
    mtu = raw["mtu"]
    mw = Where(file, raw.lines.get("mtu", where.line))
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise mw.error("underlay.mtu", f"must be a number, not {mtu!r}")
    if not 576 <= mtu <= 9000:
        raise mw.error("underlay.mtu", f"{mtu} is outside 576..9000")
    return mtu


def _trace(doc: dict, file: str, names: dict[str, str]) -> TraceSpec | None:
    raw = doc.get("trace")
    if raw is None:
        return None
    where = Where(file, doc.lines.get("trace"))
    if not isinstance(raw, dict):
        raise where.error("trace", "must be a mapping {src, dst, proto, dport, size, df}")
    _check_keys(raw, TRACE_KEYS, file, "trace.", aliases=False)
    at = lambda key: Where(file, raw.lines.get(key, where.line))  # noqa: E731
    for key in ("src", "dst"):
        if key not in raw:
            raise where.error(f"trace.{key}", "missing")
    src, dst = str(raw["src"]), str(raw["dst"])
    if src not in names:
        raise at("src").error("trace.src", f"unknown container, host or client '{src}' "
                              f"(known: {', '.join(sorted(names))})")
    if dst.startswith("["):                                 # [IPv6]:PORT
        target = dst[1:].partition("]")[0]
    elif dst.count(":") == 1:                               # NAME:PORT, IPv4:PORT
        target = dst.rsplit(":", 1)[0]
    else:
        target = dst                                        # a name, IPv4 or IPv6 address
    if target not in names:
        try:
            ipaddress.ip_address(target)
        except ValueError:
            raise at("dst").error("trace.dst", f"'{dst}' is neither a name in this lab nor an "
                                  f"IP address[:port] ([IPv6]:port)") from None
    t = TraceSpec(src=src, dst=dst)
    if "proto" in raw:
        if raw["proto"] not in TRACE_PROTOS:
            raise at("proto").error("trace.proto", f"unknown protocol {raw['proto']!r} "
                                    f"(known: {', '.join(TRACE_PROTOS)})")
        t.proto = raw["proto"]
    elif dst.count(":") == 1 or (dst.startswith("[") and "]:" in dst):     # a port
        t.proto = "tcp"
    for key, lo, hi in (("dport", 1, 65535), ("size", 28, 65535)):
        if key in raw:
            val = raw[key]
            if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
                raise at(key).error(f"trace.{key}", f"must be a number in {lo}..{hi}, not {val!r}")
            setattr(t, key, val)
    if "df" in raw:
        if not isinstance(raw["df"], bool):
            raise at("df").error("trace.df", f"must be true or false, not {raw['df']!r}")
        t.df = raw["df"]
    if t.dport and t.proto == "icmp":
        raise at("dport").error("trace.dport", "an ICMP echo has no port (set proto: tcp or udp)")
    return t


def _expect(doc: dict, file: str) -> ExpectSpec | None:
    raw = doc.get("expect")
    if raw is None:
        return None
    where = Where(file, doc.lines.get("expect"))
    if not isinstance(raw, dict) or "cause" not in raw:
        raise where.error("expect", "must be a mapping with a cause, e.g. {cause: icc-disabled}")
    _check_keys(raw, EXPECT_KEYS, file, "expect.", aliases=False)
    out = ExpectSpec(cause="ok")
    for key in ("cause", "fixed"):
        if key not in raw:
            continue
        code = raw[key]
        cw = Where(file, raw.lines.get(key, where.line))
        if not isinstance(code, str) or not CAUSE_RE.match(code):
            raise cw.error(f"expect.{key}", f"bad cause code {code!r}")
        known = _cause_codes() + (["none"] if key == "fixed" else [])
        if len(known) > 1 and code not in known:
            raise cw.error(f"expect.{key}", f"unknown cause '{code}' (known: {', '.join(known)})")
        setattr(out, key, code)
    if "stage" in raw:
        if raw["stage"] not in EXPECT_STAGES:
            raise Where(file, raw.lines.get("stage", where.line)).error(
                "expect.stage", f"unknown stage {raw['stage']!r} (known: "
                f"{', '.join(EXPECT_STAGES)})")
        out.stage = raw["stage"]
    return out


def _cause_codes() -> list[str]:
    """The diagnosis's cause codes, when that package is installed (it owns the list)."""
    try:
        from nettrace.diagnosis.model import Cause
    except ImportError:
        return []
    return [c.value for c in Cause]


def _builtin(name: str, driver: str, where: Where) -> NetworkSpec:
    return NetworkSpec(name=name, driver=driver, where=where, builtin=True,
                       subnet="172.17.0.0/16" if name == "bridge" else None,
                       gateway="172.17.0.1" if name == "bridge" else None,
                       bridge_name="docker0" if name == "bridge" else None)


def _check_keys(d: dict, allowed: set[str], file: str, prefix: str, *,
                aliases: bool = True) -> None:
    for key in d:
        if key not in allowed and not (aliases and key in OPTION_ALIASES):
            raise SpecError(f"unknown field (allowed: {', '.join(sorted(allowed))})", file=file,
                            line=d.lines.get(key), field=prefix + key)


def _check_name(name: Any, where: Where, field_name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise where.error(field_name, f"invalid name {name!r}: use letters, digits, '-' and '_'")
    if len(name) > MAX_NAME:
        raise where.error(field_name, f"name '{name}' is longer than {MAX_NAME} characters")


def _names(value: Any, file: str, line: int | None, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError("must be a list of names", file=file, line=line, field=key)
    out = []
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else item
        _check_name(name, Where(file, value.lines[i]), f"{key}[{i}]")
        out.append(name)
    return out


def _network(raw: Any, where: Where, i: int, hosts: list[str]) -> NetworkSpec:
    f = f"networks[{i}]"
    if not isinstance(raw, dict):
        raise where.error(f, "each network is a mapping with at least name and driver")
    opts = dict(raw)
    lines = dict(raw.lines)
    if isinstance(raw.get("options"), dict):
        extra = raw["options"]
        opts.update(extra)
        lines.update({k: extra.lines[k] for k in extra})
        del opts["options"]
    for key in list(opts):
        if key in OPTION_ALIASES:
            opts[OPTION_ALIASES[key]] = opts.pop(key)
            lines[OPTION_ALIASES[key]] = lines.get(key)
    at = lambda key: Where(where.file, lines.get(key, where.line))  # noqa: E731
    for key in opts:
        if key not in NETWORK_KEYS:
            raise at(key).error(f"{f}.{key}",
                                f"unknown field (allowed: {', '.join(sorted(NETWORK_KEYS))})")
    if "name" not in opts:
        raise where.error(f"{f}.name", "missing")
    _check_name(opts["name"], at("name"), f"{f}.name")
    driver = str(opts.get("driver", "bridge"))
    driver = DRIVER_ALIASES.get(driver, driver)
    if driver not in DRIVERS:
        raise at("driver").error(f"{f}.driver", f"unknown driver '{opts.get('driver')}' "
                                 f"(known: bridge, host, none, macvlan, overlay, ipvlan)")
    if driver in ("host", "null"):
        raise at("driver").error(f"{f}.driver", f"the {driver} network is built in; "
                                 f"attach containers to '{'host' if driver == 'host' else 'none'}'")
    net = NetworkSpec(name=opts["name"], driver=driver, where=at("name"))
    for key in ("subnet", "gateway"):
        if key in opts:
            setattr(net, key, str(opts[key]))
    if net.subnet:
        try:
            subnet = ipaddress.IPv4Network(net.subnet, strict=True)
        except ValueError as exc:
            raise at("subnet").error(f"{f}.subnet", f"bad CIDR '{net.subnet}': {exc}") from None
        if subnet.prefixlen > 30:
            raise at("subnet").error(f"{f}.subnet", f"{subnet} is too small: a network needs its "
                                     f"network address, a gateway, a container and its broadcast "
                                     f"address (/30 at most)")
    if net.gateway:
        try:
            gw = ipaddress.IPv4Address(net.gateway)
        except ValueError:
            raise at("gateway").error(f"{f}.gateway", f"bad IPv4 address '{net.gateway}'") from None
        if net.subnet:
            subnet = ipaddress.IPv4Network(net.subnet)
            if gw not in subnet:
                raise at("gateway").error(f"{f}.gateway", f"{gw} is not in subnet {net.subnet}")
            if gw in (subnet.network_address, subnet.broadcast_address):
                what = "network" if gw == subnet.network_address else "broadcast"
                raise at("gateway").error(f"{f}.gateway", f"{gw} is the {what} address of "
                                          f"{net.subnet}, not a host address")
    for key in ("icc", "internal", "masquerade", "ipv4", "ipv6"):
        if key in opts:
            try:
                setattr(net, key, parse_bool(opts[key]))
            except ValueError as exc:
                raise at(key).error(f"{f}.{key}", str(exc)) from None
    for key in ("gateway_mode", "host_ipv4"):
        if key in opts and driver != "bridge":
            raise at(key).error(f"{f}.{key}", f"only bridge networks have {key} "
                                f"(this one is {driver})")
    if "gateway_mode" in opts:
        try:
            net.gateway_mode = GatewayMode(str(opts["gateway_mode"]))
        except ValueError:
            raise at("gateway_mode").error(
                f"{f}.gateway_mode", f"unknown gateway mode {opts['gateway_mode']!r} "
                f"(known: {', '.join(m.value for m in GatewayMode)})") from None
    if "host_ipv4" in opts:
        try:
            net.host_ipv4 = str(ipaddress.IPv4Address(str(opts["host_ipv4"])))
        except ValueError:
            raise at("host_ipv4").error(f"{f}.host_ipv4",
                                        f"bad IPv4 address {opts['host_ipv4']!r}") from None
    if "mtu" in opts:
        mtu = opts["mtu"]                    # an integer, or a string of digits (Docker options)
        if isinstance(mtu, bool) or not (isinstance(mtu, int) or
                                         (isinstance(mtu, str) and mtu.strip().isdigit())):
            raise at("mtu").error(f"{f}.mtu", f"must be a whole number of bytes, not {mtu!r}")
        net.mtu = int(mtu)
        if not 68 <= net.mtu <= 65535:
            raise at("mtu").error(f"{f}.mtu", f"{net.mtu} is outside 68..65535")
    _network_v6(net, opts, at, f)
    for key in ("bridge_name", "parent"):
        if key in opts:
            val = str(opts[key])
            if len(val) > IFNAMSIZ:
                raise at(key).error(f"{f}.{key}", f"interface name '{val}' is {len(val)} characters; "
                                    f"Linux allows at most {IFNAMSIZ}")
            if not re.match(r"^[a-zA-Z0-9_.-]+$", val):
                raise at(key).error(f"{f}.{key}", f"invalid interface name '{val}'")
            if key == "bridge_name" and (val in RESERVED_IFNAMES or val.startswith("veth")):
                raise at(key).error(f"{f}.{key}", f"'{val}' is an interface the Docker host "
                                    f"already has (or nettrace names its own devices so); "
                                    f"pick another bridge name")
            setattr(net, key, val)
    if "mode" in opts:
        if driver not in ("macvlan", "ipvlan"):
            raise at("mode").error(f"{f}.mode", "only macvlan and ipvlan networks have a mode")
        net.mode = str(opts["mode"])
        allowed = MACVLAN_MODES if driver == "macvlan" else ("l2", "l3", "l3s")
        if net.mode not in allowed:
            raise at("mode").error(f"{f}.mode", f"unknown {driver} mode '{net.mode}' "
                                   f"(known: {', '.join(allowed)})")
    elif driver == "ipvlan":
        net.mode = "l2"
    if "vni" in opts:
        if driver != "overlay":
            raise at("vni").error(f"{f}.vni", "only overlay networks have a VNI")
        try:
            net.vni = int(str(opts["vni"]).split(",")[0])
        except ValueError:
            raise at("vni").error(f"{f}.vni", f"must be a number, not {opts['vni']!r}") from None
        if not 1 <= net.vni < 2 ** 24:
            raise at("vni").error(f"{f}.vni", f"VNI {net.vni} is outside 1..16777215")
    if "host" in opts:
        if driver == "overlay":
            raise at("host").error(f"{f}.host", "overlay networks are swarm-scoped: they span hosts")
        if opts["host"] not in hosts:
            raise at("host").error(f"{f}.host", f"unknown host '{opts['host']}' "
                                   f"(hosts: {', '.join(hosts)})")
        net.host = str(opts["host"])
    return net


def _network_v6(net: NetworkSpec, opts: dict, at, f: str) -> None:
    """IPv6 keys: ipv6, subnet_v6, gateway_v6, ipv4 (checked after the booleans are read)."""
    for key in ("subnet_v6", "gateway_v6"):
        if key in opts and not net.ipv6:
            raise at(key).error(f"{f}.{key}", "needs ipv6: true on this network")
    if "subnet_v6" in opts:
        try:
            sub = ipaddress.IPv6Network(str(opts["subnet_v6"]), strict=True)
        except ValueError as exc:
            raise at("subnet_v6").error(f"{f}.subnet_v6",
                                        f"bad IPv6 CIDR '{opts['subnet_v6']}': {exc}") from None
        if sub.prefixlen > 126:
            raise at("subnet_v6").error(f"{f}.subnet_v6", f"/{sub.prefixlen} leaves no room for "
                                        "a gateway and containers (at most /126)")
        net.subnet_v6 = str(sub)
    if "gateway_v6" in opts:
        try:
            gw = ipaddress.IPv6Address(str(opts["gateway_v6"]))
        except ValueError:
            raise at("gateway_v6").error(f"{f}.gateway_v6",
                                         f"bad IPv6 address '{opts['gateway_v6']}'") from None
        if net.subnet_v6 and gw not in ipaddress.IPv6Network(net.subnet_v6):
            raise at("gateway_v6").error(f"{f}.gateway_v6", f"{gw} is not in subnet_v6 {net.subnet_v6}")
        net.gateway_v6 = str(gw)
    if not net.ipv4:
        if not net.ipv6:
            raise at("ipv4").error(f"{f}.ipv4", "a network needs IPv4 or IPv6: set ipv6: true "
                                   "for an IPv6-only network")
        if net.driver not in ("bridge", "macvlan"):
            raise at("ipv4").error(f"{f}.ipv4", "IPv6-only networks are supported on the bridge "
                                   f"and macvlan drivers, not {net.driver}")
        for key in ("subnet", "gateway"):
            if key in opts:
                raise at(key).error(f"{f}.{key}", "an IPv6-only network (ipv4: false) has no IPv4 "
                                    f"{key}")
    if net.ipv6 and net.driver == "ipvlan":
        raise at("ipv6").error(f"{f}.ipv6", "IPv6 on ipvlan networks is not supported by nettrace")


def _container(raw: Any, where: Where, i: int, hosts: list[str],
               networks: list[NetworkSpec]) -> ContainerSpec:
    f = f"containers[{i}]"
    if not isinstance(raw, dict):
        raise where.error(f, "each container is a mapping with at least a name")
    at = lambda key: Where(where.file, raw.lines.get(key, where.line))  # noqa: E731
    _check_keys(raw, CONTAINER_KEYS, where.file, f + ".")
    if "name" not in raw:
        raise where.error(f"{f}.name", "missing")
    _check_name(raw["name"], at("name"), f"{f}.name")
    host = raw.get("host", hosts[0])
    if host not in hosts:
        raise at("host").error(f"{f}.host", f"unknown host '{host}' (hosts: {', '.join(hosts)})")
    ctr = ContainerSpec(name=raw["name"], host=host, where=at("name"))
    nets = raw.get("networks", ["bridge"])
    if isinstance(nets, str):
        nets = [nets]
    if not isinstance(nets, list) or not nets:
        raise at("networks").error(f"{f}.networks", "must be a non-empty list of network names")
    known = {n.name for n in networks}
    for j, item in enumerate(nets):
        line = nets.lines[j] if hasattr(nets, "lines") else at("networks").line
        fj = f"{f}.networks[{j}]"
        ip6 = None
        if isinstance(item, dict):
            for key in item:
                if key not in ("name", "ip", "ip6"):
                    raise Where(where.file, item.lines.get(key, line)).error(
                        f"{fj}.{key}", "unknown field (allowed: ip, ip6, name)")
            net_name, ip, ip6 = item.get("name"), item.get("ip"), item.get("ip6")
        else:
            net_name, ip = item, (raw.get("ip") if j == 0 else None)
        if net_name not in known:
            raise Where(where.file, line).error(fj, f"unknown network '{net_name}' "
                                                f"(defined: {', '.join(sorted(known))})")
        net = next(n for n in networks if n.name == net_name)
        if net.host and net.host != host:
            raise Where(where.file, line).error(fj, f"network '{net_name}' lives on host "
                                                f"'{net.host}', container is on '{host}'")
        if ip is not None:
            try:
                addr = ipaddress.IPv4Address(str(ip))
            except ValueError:
                raise Where(where.file, line).error(fj + ".ip", f"bad IPv4 address '{ip}'") from None
            if net.subnet:
                subnet = ipaddress.IPv4Network(net.subnet)
                if addr not in subnet:
                    raise Where(where.file, line).error(fj + ".ip", f"{addr} is not in {net.subnet}")
                special = {subnet.network_address: "the network address",
                           subnet.broadcast_address: "the broadcast address"}
                if net.gateway:
                    special[ipaddress.IPv4Address(net.gateway)] = "the gateway's address"
                if addr in special:
                    raise Where(where.file, line).error(fj + ".ip", f"{addr} is {special[addr]} "
                                                        f"of {net.subnet}")
            ip = str(addr)
        if ip is not None and not net.ipv4:
            raise Where(where.file, line).error(fj + ".ip", f"network '{net_name}' is IPv6-only")
        if ip6 is not None:
            if not net.ipv6:
                raise Where(where.file, line).error(fj + ".ip6", f"network '{net_name}' has no "
                                                    "IPv6 (ipv6: true)")
            try:
                addr6 = ipaddress.IPv6Address(str(ip6))
            except ValueError:
                raise Where(where.file, line).error(fj + ".ip6",
                                                    f"bad IPv6 address '{ip6}'") from None
            if not net.subnet_v6:
                raise Where(where.file, line).error(fj + ".ip6", "a fixed IPv6 address needs the "
                                                    "network's subnet_v6 (as Docker's --ip6 does)")
            if addr6 not in ipaddress.IPv6Network(net.subnet_v6):
                raise Where(where.file, line).error(fj + ".ip6", f"{addr6} is not in {net.subnet_v6}")
            ip6 = str(addr6)
        if any(a.network == net_name for a in ctr.networks):
            raise Where(where.file, line).error(fj, f"network '{net_name}' joined twice")
        ctr.networks.append(Attachment(net_name, ip, Where(where.file, line), ip6))
    if len(ctr.networks) > 1 and {a.network for a in ctr.networks} & {"host", "none"}:
        raise at("networks").error(f"{f}.networks", "'host' and 'none' cannot be combined with "
                                   "other networks")
    publish = raw.get("publish") or []
    if isinstance(publish, str):
        publish = _List([publish])
        publish.lines = [at("publish").line]
    if not isinstance(publish, list):
        raise at("publish").error(f"{f}.publish", f"must be a list of published ports such as "
                                  f"[\"8080:80/tcp\"], not {publish!r}")
    for j, item in enumerate(publish):
        line = publish.lines[j]
        ctr.publish.append(_port(item, Where(where.file, line), f"{f}.publish[{j}]"))
    listen = raw.get("listen")
    if listen is not None:
        if not isinstance(listen, list):
            raise at("listen").error(f"{f}.listen", "must be a list like [tcp/80, udp/53]")
        for j, item in enumerate(listen):
            lw = Where(where.file, listen.lines[j])
            m = LISTEN_RE.match(str(item))
            if not m:
                raise lw.error(f"{f}.listen[{j}]", f"bad listener {item!r} (form: tcp/PORT or "
                               f"udp/PORT)")
            if not 1 <= int(m.group(2)) <= 65535:
                raise lw.error(f"{f}.listen[{j}]", f"port {m.group(2)} is outside 1..65535")
            if str(item) in ctr.listen:
                raise lw.error(f"{f}.listen[{j}]", f"'{item}' listed twice")
            ctr.listen.append(str(item))
    return ctr


def _port(item: Any, where: Where, f: str) -> PortSpec:
    try:
        return PublishedPort.parse(str(item))
    except ValueError as exc:
        raise where.error(f, str(exc)) from None


def _check_ports(spec: LabSpec) -> None:
    """A host port is bound once per host, protocol and address (Docker: "port is already
    allocated"); a wildcard binding clashes with every specific address."""
    seen: dict[tuple, list[tuple[str, str | None]]] = {}
    for ctr in spec.containers:
        for j, port in enumerate(ctr.publish):
            key = (ctr.host, port.proto, port.host_port)
            for name, ip in seen.get(key, []):
                if ip is None or port.host_ip is None or ip == port.host_ip:
                    raise ctr.where.error(
                        f"containers.{ctr.name}.publish[{j}]",
                        f"host port {port.host_port}/{port.proto} is already published by "
                        f"'{name}' on host '{ctr.host}' (Docker: port is already allocated)")
            seen.setdefault(key, []).append((ctr.name, port.host_ip))


def check_engine_support(spec: LabSpec) -> None:
    """What the lab asks of its engine profile (again after `lab up --engine` overrides it)."""
    if spec.engine.version != "20.10":
        return
    for net in spec.networks:
        if not net.ipv4:
            raise net.where.error(f"networks.{net.name}.ipv4", "IPv6-only networks came with "
                                  "Docker 28: use engine: {version: \"29\"} (or lab up --engine 29)")
        if net.gateway_mode is not GatewayMode.NAT:
            raise net.where.error(f"networks.{net.name}.gateway_mode",
                                  f"gateway modes ({net.gateway_mode.value}) came with Docker 28: "
                                  f"use engine: {{version: \"29\"}} (or lab up --engine 29)")


def _check_bridge_names(spec: LabSpec) -> None:
    """Two networks on one host cannot both name their bridge the same (the second would
    fail in the kernel with "File exists", half-way through building the lab)."""
    named = [n for n in spec.networks if n.bridge_name and not n.builtin]
    for i, a in enumerate(named):
        for b in named[:i]:
            if a.bridge_name == b.bridge_name and (a.host is None or b.host is None
                                                   or a.host == b.host):
                raise a.where.error(f"networks.{a.name}.bridge_name",
                                    f"bridge '{a.bridge_name}' is already the bridge of network "
                                    f"'{b.name}' on the same host")


def _check_subnets(spec: LabSpec) -> None:
    """Explicit subnets must not overlap within a host (or anywhere, for overlays)."""
    for key in ("subnet", "subnet_v6"):
        nets = [n for n in spec.networks if getattr(n, key)]
        for i, a in enumerate(nets):
            for b in nets[:i]:
                same_place = a.driver == "overlay" or b.driver == "overlay" or \
                    (a.host or spec.hosts[0]) == (b.host or spec.hosts[0]) or a.host is None or b.host is None
                sa, sb = getattr(a, key), getattr(b, key)
                if same_place and ipaddress.ip_network(sa).overlaps(ipaddress.ip_network(sb)):
                    raise a.where.error(f"networks.{a.name}.{key}",
                                        f"{sa} overlaps {sb} of network '{b.name}'")


def _check_addresses(spec: LabSpec) -> None:
    """Fixed container addresses are unique per network, and every network has room for its
    containers (IPAM would otherwise run out half-way through building the lab)."""
    for net in spec.networks:
        places = [None] if net.scope == "swarm" else (
            [net.host] if net.host else spec.hosts)
        for place in places:
            ctrs = [c for c in spec.containers if place is None or c.host == place]
            used: dict[str, str] = {}
            joined = 0
            for c in ctrs:
                for a in c.networks:
                    if a.network != net.name:
                        continue
                    joined += 1
                    if a.ip and a.ip in used:
                        raise a.where.error(f"containers.{c.name}.networks.{net.name}.ip",
                                            f"{a.ip} is already the address of '{used[a.ip]}'")
                    if a.ip:
                        used[a.ip] = c.name
            if net.subnet:
                room = ipaddress.IPv4Network(net.subnet).num_addresses - 3   # net, gw, broadcast
                if joined > room:
                    raise net.where.error(f"networks.{net.name}.subnet",
                                          f"{joined} containers joined, but {net.subnet} has "
                                          f"room for {room}")

