"""Map a live Docker engine into the same CNM `Lab` model a nettrace lab uses.

The Docker API says what exists (networks with driver, subnet, gateway and options;
containers with their endpoints' MAC and IP; sandbox keys); the kernel says how it is wired
(which host-side veth is the peer of each container interface, bridge masters, vxlan and
macvlan links, MTUs, routes). Both are read, nothing is changed. The result plugs into
everything that takes a lab: `nettrace lab show --docker`, `nettrace path --docker`, the TUI.

Discovery is two steps: `from_api` maps the engine's API JSON (an `ApiSnapshot`: /version,
/info, network and container inspections) to the model, a pure function tested on recorded
JSON (tests/fixtures/docker/); then the kernel pass fills in what only the kernel knows.

Namespaces are referred to by absolute path (Docker's sandboxes are bind mounts under
<exec-root>/netns, not `ip netns` names), except dockerd's own namespace when it has a name
under /run/netns.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from nettrace.errors import NettraceError, require_root
from nettrace.topology import netns
from nettrace.topology.model import (Endpoint, EngineProfile, EngineVersion, FirewallBackend,
                                     GatewayMode, Host, Interface, Lab, Network, PublishedPort,
                                     Role, Sandbox, Scope)

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_EXEC_ROOT = "/var/run/docker"
OVERLAY_SANDBOX_PREFIX = "1-"          # 1-<netid10>: an overlay network's own namespace


@dataclass
class Link:
    """One kernel interface as discovery needs it."""

    index: int
    ifname: str
    kind: str
    mac: str | None
    mtu: int
    peer_index: int | None             # IFLA_LINK: veth peer or macvlan parent (other netns)
    master: int | None
    up: bool
    addresses: list[str] = field(default_factory=list)   # "10.0.0.2/24"
    hairpin: bool | None = None        # bridge ports only


@dataclass
class NamespaceView:
    """The links and IPv4 routes of one namespace, read once."""

    netns: str
    links: dict[int, Link]
    routes: list[str]

    def by_name(self, ifname: str) -> Link | None:
        return next((lk for lk in self.links.values() if lk.ifname == ifname), None)

    def by_mac(self, mac: str) -> Link | None:
        mac = mac.lower()
        return next((lk for lk in self.links.values() if lk.mac == mac), None)


def read_namespace(ns: str, *, bridge_ports: bool = True) -> NamespaceView:
    """Links, addresses and main-table IPv4 routes of namespace `ns` (a name or a path);
    with `bridge_ports`, also each bridge port's hairpin flag (an extra dump)."""
    with netns.iproute(ns) as ipr:
        raw_links = ipr.get_links()
        raw_addrs = ipr.get_addr(family=socket.AF_INET)
        raw_routes = ipr.get_routes(family=socket.AF_INET, table=254)
        raw_ports = ipr.get_links(family=socket.AF_BRIDGE) if bridge_ports else []
    links: dict[int, Link] = {}
    for msg in raw_links:
        links[msg["index"]] = Link(
            index=msg["index"], ifname=msg.get_attr("IFLA_IFNAME"),
            kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or
            ("loopback" if msg.get_attr("IFLA_IFNAME") == "lo" else ""),
            mac=(msg.get_attr("IFLA_ADDRESS") or "").lower() or None,
            mtu=msg.get_attr("IFLA_MTU") or 0,
            peer_index=msg.get_attr("IFLA_LINK"), master=msg.get_attr("IFLA_MASTER"),
            up=bool(msg["flags"] & 1))
    for msg in raw_addrs:
        if msg["index"] in links:
            links[msg["index"]].addresses.append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    for msg in raw_ports:
        mode = msg.get_nested("IFLA_PROTINFO", "IFLA_BRPORT_MODE")
        if msg["index"] in links and mode is not None:
            links[msg["index"]].hairpin = bool(mode)
    names = {i: lk.ifname for i, lk in links.items()}
    return NamespaceView(ns, links, [_route_text(r, names) for r in raw_routes])


def _route_text(msg, names: dict[int, str]) -> str:
    """A route the way `ip route` prints it (the lab model stores them so)."""
    dst = msg.get_attr("RTA_DST")
    text = f"{dst}/{msg['dst_len']}" if dst else "default"
    gateway = msg.get_attr("RTA_GATEWAY")
    if gateway:
        text += f" via {gateway}"
    oif = msg.get_attr("RTA_OIF")
    if oif in names:
        text += f" dev {names[oif]}"
    if msg["proto"] == 2:
        text += " proto kernel"
    if msg["scope"] == 253:
        text += " scope link"
    src = msg.get_attr("RTA_PREFSRC")
    if src:
        text += f" src {src}"
    return text


# -- the engine ---------------------------------------------------------------------------

def docker_url(host: str | None) -> str:
    """--docker-host URL, else DOCKER_HOST, else the local socket."""
    url = host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if url.startswith("/"):
        url = "unix://" + url
    return url


def _client(url: str):
    import docker
    from docker.errors import DockerException
    try:
        client = docker.DockerClient(base_url=url, timeout=30)
        client.ping()
    except DockerException as exc:
        raise NettraceError(f"cannot reach the Docker engine at {url}: {exc}") from None
    return client


def daemon_pid(url: str) -> int:
    """PID of the dockerd serving unix socket `url`: the process holding its listening socket.

    /proc/<pid>/net/unix lists the sockets of that process's own namespace, so this works
    for engines running in other network namespaces too.
    """
    if not url.startswith("unix://"):
        raise NettraceError(f"--docker-host {url}: discovery reads the engine's namespaces, so it "
                            f"needs a local unix socket (unix:///path/docker.sock)")
    path = url[len("unix://"):]
    for pid in _pids_named("dockerd"):
        inodes = _listening_unix_inodes(pid, path)
        if inodes and inodes & _socket_inodes(pid):
            return pid
    raise NettraceError(f"no dockerd process on this machine listens on {path}")


def _pids_named(comm: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == comm:
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def _listening_unix_inodes(pid: int, path: str) -> set[int]:
    found = set()
    try:
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                # Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening
                if len(parts) >= 8 and parts[7] == path and int(parts[3], 16) & 0x10000:
                    found.add(int(parts[6]))
    except OSError:
        pass
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def is_netns(path: str) -> bool:
    """A mounted namespace file, not the empty file a removed sandbox leaves behind."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _exec_root(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace").split("\0")
    for i, arg in enumerate(argv):
        if arg == "--exec-root" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--exec-root="):
            return arg.split("=", 1)[1]
    return DEFAULT_EXEC_ROOT


def _named_netns(pid: int) -> tuple[str, str | None]:
    """dockerd's namespace: its /run/netns name when it has one, else /proc/<pid>/ns/net."""
    ino = os.stat(f"/proc/{pid}/ns/net").st_ino
    for name in netns.list_all():
        try:
            if netns.inode(name) == ino:
                return name, name
        except OSError:
            continue
    return f"/proc/{pid}/ns/net", None


# -- discovery ----------------------------------------------------------------------------

def discover(host: str | None = None) -> Lab:
    """The CNM view of the live engine at `host` (DOCKER_HOST or the local socket).

    `host` may list several engines of one swarm, comma-separated: they become the hosts of
    one lab, so a path between containers on two engines is traced through both.
    """
    require_root("discovering a Docker engine (its namespaces are read with setns)")
    urls = [docker_url(h.strip()) for h in host.split(",")] if host else [docker_url(None)]
    labs = []
    for url in urls:
        client = _client(url)
        try:
            labs.append(_Discovery(client, url).run())
        finally:
            client.close()
    return labs[0] if len(labs) == 1 else merge(labs)


def merge(labs: list[Lab]) -> Lab:
    """Engines of one swarm as one lab: their hosts, networks, containers and interfaces."""
    lab = Lab(name="docker", source=",".join(str(one.source) for one in labs), pid=labs[0].pid,
              created=time.time())
    for one in labs:
        for kind, mine, theirs in (("host", lab.hosts, one.hosts),
                                   ("container", lab.sandboxes, one.sandboxes)):
            clash = sorted(set(mine) & set(theirs))
            if clash:
                raise NettraceError(f"{kind} name(s) {', '.join(clash)} on two engines "
                                    f"({lab.source}): names must be unique to trace")
            mine.update(theirs)
        lab.networks += one.networks
        lab.interfaces += one.interfaces
        lab.namespaces += one.namespaces
    return lab


# -- the API's answer, mapped (pure) --------------------------------------------------------

@dataclass
class ApiSnapshot:
    """What discovery asks the Docker API: /version, /info, every network and container
    inspected. Saved as JSON, it is a test fixture (tests/fixtures/docker/)."""

    version: dict
    info: dict
    networks: list[dict]
    containers: list[dict]

    @classmethod
    def load(cls, path: str) -> ApiSnapshot:
        with open(path) as f:
            d = json.load(f)
        return cls(d["version"], d["info"], d["networks"], d["containers"])

    def to_dict(self) -> dict:
        return asdict(self)


def fetch(client) -> ApiSnapshot:
    """Ask the engine (Docker API calls wait on the daemon: they overlap)."""
    api = client.api
    with ThreadPoolExecutor(max_workers=4) as pool:
        version, info = pool.submit(api.version), pool.submit(api.info)
        networks = list(pool.map(api.inspect_network, [n["Id"] for n in api.networks()]))
        containers = list(pool.map(api.inspect_container, [c["Id"] for c in api.containers()]))
        return ApiSnapshot(version.result(), info.result(), networks, containers)


def engine_profile(snapshot: ApiSnapshot, *, userland_proxy: bool | None = None) -> EngineProfile:
    """The profile of the engine: its release, /info's FirewallBackend (Docker 28.2+; older
    engines have only iptables), and the userland proxy (/info says so from 29.5; else the
    caller's reading of dockerd's configuration; else Docker's default, on)."""
    release = snapshot.version.get("Version") or snapshot.info.get("ServerVersion") or ""
    try:
        version = EngineVersion.of_release(release)
    except ValueError:
        raise NettraceError(f"the Docker engine reports no usable version ({release!r})") \
            from None
    backend = (snapshot.info.get("FirewallBackend") or {})
    driver = str(backend.get("Driver") or "iptables")
    firewall = FirewallBackend.NFTABLES if driver.startswith("nftables") else \
        FirewallBackend.IPTABLES
    info = {k: v for k, v in backend.get("Info") or []}
    if "EnableUserlandProxy" in info:
        userland_proxy = info["EnableUserlandProxy"] == "true"
    elif version is EngineVersion.V29 and re.match(r"^(29\.([5-9]|\d\d)|[3-9]\d)", release) \
            and backend:
        userland_proxy = False                  # 29.5+ lists it when on
    return EngineProfile(version=version, firewall=firewall,
                         userland_proxy=True if userland_proxy is None else userland_proxy)


def from_api(snapshot: ApiSnapshot, *, url: str, host: str, host_ns: str, netns_dir: str,
             userland_proxy: bool | None = None) -> Lab:
    """The lab model the API describes: networks, running containers and their endpoints,
    published ports, the engine profile. Interface names, MTUs learnt from links, routes and
    DNS files are left to the kernel pass (`ifname` "?" until then)."""
    lab = Lab(name="docker", source=url, created=time.time(),
              engine=engine_profile(snapshot, userland_proxy=userland_proxy))
    lab.hosts[host] = Host(name=host, netns=host_ns)
    lab.networks = [map_network(raw, host=host, host_ns=host_ns, netns_dir=netns_dir)
                    for raw in snapshot.networks]
    by_id = {raw["Id"]: raw for raw in snapshot.networks}
    for raw in snapshot.containers:
        sandbox = map_sandbox(raw, by_id, host=host, host_ns=host_ns)
        if sandbox is not None:
            lab.sandboxes[sandbox.name] = sandbox
    return lab


def _bool_option(opts: dict, key: str, default: bool) -> bool:
    from nettrace.topology.spec import parse_bool
    try:
        return parse_bool(opts[key]) if key in opts else default
    except ValueError:
        return default


def map_network(raw: dict, *, host: str, host_ns: str, netns_dir: str) -> Network:
    """One network inspection as a lab network (gateway None when IPAM left it to Docker)."""
    opts = raw.get("Options") or {}
    driver = raw["Driver"]
    subnet = gateway = subnet_v6 = gateway_v6 = None
    for cfg in (raw.get("IPAM") or {}).get("Config") or []:
        if not cfg.get("Subnet"):
            continue
        if ipaddress.ip_network(cfg["Subnet"]).version == 4 and subnet is None:
            subnet, gateway = cfg["Subnet"], cfg.get("Gateway")
        elif ipaddress.ip_network(cfg["Subnet"]).version == 6 and subnet_v6 is None:
            subnet_v6, gateway_v6 = cfg["Subnet"], cfg.get("Gateway")
    swarm = raw.get("Scope") == "swarm"
    device = ns = None
    options: dict = dict(opts)
    vni = None
    if driver == "bridge":
        device = opts.get("com.docker.network.bridge.name") or f"br-{raw['Id'][:12]}"
        ns = host_ns
    elif driver == "overlay":
        device, ns = "br0", os.path.join(netns_dir, OVERLAY_SANDBOX_PREFIX + raw["Id"][:10])
        vnis = opts.get("com.docker.network.driver.overlay.vxlanid_list", "")
        vni = int(vnis.split(",")[0]) if vnis else None
    elif driver in ("macvlan", "ipvlan"):
        device, ns = opts.get("parent"), host_ns
        options["parent"] = opts.get("parent")
        options["mode"] = opts.get(f"{driver}_mode") or ("bridge" if driver == "macvlan" else "l2")
    try:
        mtu = int(opts.get("com.docker.network.driver.mtu") or 0)
    except ValueError:
        mtu = 0
    try:
        gateway_mode = GatewayMode(opts.get("com.docker.network.bridge.gateway_mode_ipv4") or "nat")
    except ValueError:
        gateway_mode = GatewayMode.NAT
    internal = bool(raw.get("Internal"))
    return Network(
        name=raw["Name"], driver=driver, scope=Scope.SWARM if swarm else Scope.LOCAL,
        id=raw["Id"], host=None if swarm else host, subnet=subnet, gateway=gateway,
        device=device, netns=ns, mtu=mtu or 1500,
        icc=_bool_option(opts, "com.docker.network.bridge.enable_icc", True),
        internal=internal,
        masquerade=(_bool_option(opts, "com.docker.network.bridge.enable_ip_masquerade", True)
                    and not internal and driver == "bridge"),
        vni=vni, options=options, gateway_mode=gateway_mode,
        host_ipv4=opts.get("com.docker.network.host_ipv4") or None,
        ipv6=bool(raw.get("EnableIPv6")), ipv4=raw.get("EnableIPv4", True) is not False,
        subnet_v6=subnet_v6 if raw.get("EnableIPv6") else None,
        gateway_v6=gateway_v6 if raw.get("EnableIPv6") else None)


def map_sandbox(raw: dict, networks_by_id: dict[str, dict], *, host: str,
                host_ns: str) -> Sandbox | None:
    """One container inspection as a sandbox; None when it has no network of its own
    (--network container:X) or is not running."""
    name = raw["Name"].lstrip("/")
    settings = raw.get("NetworkSettings") or {}
    mode = (raw.get("HostConfig") or {}).get("NetworkMode") or "default"
    mode = "bridge" if mode == "default" else mode
    if mode.startswith("container:") or not (raw.get("State") or {}).get("Running", True):
        return None
    if mode == "host":
        sandbox = Sandbox(name=name, host=host, netns=host_ns, network_mode="host")
    else:
        key = settings.get("SandboxKey")
        if not key:
            return None
        sandbox = Sandbox(name=name, host=host, netns=key, network_mode=mode)
    sandbox.hostname = (raw.get("Config") or {}).get("Hostname") or ""
    sandbox.published = _published(raw)
    if mode == "host":
        return sandbox
    for net_name, ep in _attachments(raw, networks_by_id).items():
        if net_name in ("host", "none") or not ep.get("MacAddress"):
            continue
        sandbox.endpoints.append(Endpoint(
            name=f"{name}-{net_name}", container=name, network=net_name, ifname="?",
            mac=ep["MacAddress"].lower(), ipv4=ep.get("IPAddress") or None,
            prefixlen=int(ep.get("IPPrefixLen") or 0), mtu=0,
            ipv6=ep.get("GlobalIPv6Address") or None,
            prefixlen6=int(ep["GlobalIPv6PrefixLen"]) if ep.get("GlobalIPv6Address") else None))
    return sandbox


def _attachments(raw: dict, networks_by_id: dict[str, dict]) -> dict[str, dict]:
    """The container's endpoints, including those Docker does not list on the container
    (docker_gwbridge for overlay users), keyed by network name."""
    attached = dict((raw.get("NetworkSettings") or {}).get("Networks") or {})
    for net in networks_by_id.values():
        if net["Name"] not in attached and raw["Id"] in (net.get("Containers") or {}):
            ep = net["Containers"][raw["Id"]]
            attached[net["Name"]] = {
                "MacAddress": ep.get("MacAddress"),
                "IPAddress": (ep.get("IPv4Address") or "/").split("/")[0],
                "IPPrefixLen": int((ep.get("IPv4Address") or "/0").split("/")[1] or 0),
                "GlobalIPv6Address": (ep.get("IPv6Address") or "/").split("/")[0],
                "GlobalIPv6PrefixLen": int((ep.get("IPv6Address") or "/0").split("/")[1] or 0),
                "NetworkID": net["Id"]}
    return attached


# -- the kernel's side ----------------------------------------------------------------------

def userland_proxy_of(pid: int) -> bool | None:
    """dockerd's --userland-proxy, from its command line or its --config-file (None: unset)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    config = "/etc/docker/daemon.json"
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--userland-proxy="):
            return arg.split("=", 1)[1].lower() in ("true", "1", "t")
        if arg == "--userland-proxy":
            return nxt.lower() not in ("false", "0", "f")
        if arg == "--config-file":
            config = nxt
        elif arg.startswith("--config-file="):
            config = arg.split("=", 1)[1]
    try:
        with open(config) as f:
            value = json.load(f).get("userland-proxy")
    except (OSError, ValueError, AttributeError):
        return None
    return None if value is None else bool(value)


class _Discovery:
    def __init__(self, client, url: str):
        self.client, self.url = client, url
        self.pid = daemon_pid(url)
        self.host_ns, ns_name = _named_netns(self.pid)
        self.netns_dir = os.path.join(_exec_root(self.pid), "netns")
        self.ns_name = ns_name
        self.views: dict[str, NamespaceView] = {}

    def view(self, ns: str, *, bridge_ports: bool = True) -> NamespaceView:
        if ns not in self.views:
            self.views[ns] = read_namespace(ns, bridge_ports=bridge_ports)
        return self.views[ns]

    def run(self) -> Lab:
        snapshot = fetch(self.client)
        # a private engine in a named namespace is best known by that name; otherwise the
        # engine's host name
        ns_name = self.ns_name
        self.host_name = (ns_name.split(".", 1)[1] if ns_name and "." in ns_name
                          else ns_name or snapshot.info.get("Name") or "docker")
        lab = self.lab = from_api(snapshot, url=self.url, host=self.host_name,
                                  host_ns=self.host_ns, netns_dir=self.netns_dir,
                                  userland_proxy=userland_proxy_of(self.pid))
        lab.pid = self.pid
        host = lab.hosts[self.host_name]
        host_view = self.view(self.host_ns)
        raw_networks = {raw["Name"]: raw for raw in snapshot.networks}
        for net in lab.networks:
            self.network_from_kernel(net, raw_networks[net.name])
        raw_containers = {raw["Name"].lstrip("/"): raw for raw in snapshot.containers}
        for name, sandbox in list(lab.sandboxes.items()):
            if sandbox.network_mode != "host" and not is_netns(sandbox.netns):
                del lab.sandboxes[name]              # not running: no namespace to trace
                continue
            if sandbox.network_mode != "host":
                self.view(sandbox.netns, bridge_ports=False)
        for name, sandbox in lab.sandboxes.items():
            self.sandbox_from_kernel(sandbox, raw_containers[name])
        self.special_sandboxes()
        self.interfaces(host_view)
        if any(n.scope is Scope.SWARM for n in lab.networks):
            # a swarm node's address is where its VXLAN traffic leaves: the host's uplink
            host.address = (snapshot.info.get("Swarm") or {}).get("NodeAddr") or None
            for link in host_view.links.values():
                for addr in link.addresses:
                    if addr.split("/")[0] == host.address and link.kind != "loopback":
                        host.uplink, host.prefixlen = link.ifname, int(addr.split("/")[1])
        # Namespaces a tracer should watch. Overlay sandboxes are left to their Network
        # (netns), which names them ov-<network> as labs do.
        overlay = {n.netns for n in lab.networks if n.driver == "overlay"}
        lab.namespaces = [ns for ns in self.views if ns not in overlay]
        return lab

    # -- networks ---------------------------------------------------------------------------
    def network_from_kernel(self, net: Network, raw: dict) -> None:
        """MTU from the device when no option set it, gateway from the bridge address."""
        if net.driver == "overlay" and net.netns and not is_netns(net.netns):
            net.netns = None
        link = self.view(net.netns).by_name(net.device) if net.device and net.netns else None
        if "com.docker.network.driver.mtu" not in (raw.get("Options") or {}) and link:
            net.mtu = link.mtu
        if net.subnet and not net.gateway:
            net.gateway = _gateway(net.subnet,
                                   link if net.driver in ("bridge", "overlay") else None)
        if net.subnet_v6 and not net.gateway_v6:
            net.gateway_v6 = _gateway(net.subnet_v6,
                                      link if net.driver in ("bridge", "overlay") else None)

    # -- containers -------------------------------------------------------------------------
    def sandbox_from_kernel(self, sandbox: Sandbox, raw: dict) -> None:
        """Interface names and MTUs by endpoint MAC, routes, the DNS file Docker wrote."""
        if sandbox.network_mode != "host":
            view = self.view(sandbox.netns)
            sandbox.routes = list(view.routes)
            for ep in sandbox.endpoints:
                link = view.by_mac(ep.mac)
                if link:
                    ep.ifname, ep.mtu = link.ifname, link.mtu
            sandbox.endpoints.sort(key=lambda e: e.ifname)
        sandbox.resolv_conf = _read(raw.get("ResolvConfPath"))
        sandbox.etc_hosts = _read(raw.get("HostsPath"))

    def special_sandboxes(self) -> None:
        """Overlay network sandboxes (1-<id>), ingress_sbox and load balancers (lb_<id>)."""
        try:
            keys = sorted(os.listdir(self.netns_dir))
        except FileNotFoundError:
            return
        for key in keys:
            path = os.path.join(self.netns_dir, key)
            if (key.startswith(OVERLAY_SANDBOX_PREFIX) or key == "ingress_sbox" or
                    key.startswith("lb_")) and is_netns(path):
                self.view(path)

    # -- interfaces and their roles -----------------------------------------------------------
    def interfaces(self, host_view: NamespaceView) -> None:
        lab = self.lab
        host = self.host_name
        bridges = {(n.netns, n.device): n for n in lab.networks
                   if n.driver in ("bridge", "overlay") and n.device and n.netns}
        parents = {n.device: n for n in lab.networks if n.driver in ("macvlan", "ipvlan")}
        owner = {}                                   # netns -> sandbox name
        for sb in lab.sandboxes.values():
            if sb.network_mode != "host":
                owner[sb.netns] = sb.name
        for net in lab.networks:
            if net.driver == "overlay" and net.netns:
                owner[net.netns] = f"ov-{net.name}"  # Docker's 1-<id>, named as labs name it
        for ns in self.views:
            if ns != self.host_ns and ns not in owner:
                owner[ns] = os.path.basename(ns)     # ingress_sbox, lb_<id>
        # container side first: it names the host-side peers
        peer_of: dict[tuple[str, int], tuple[str, Link, str | None]] = {}
        for ns, view in self.views.items():
            if ns == self.host_ns or ns not in owner:
                continue
            sb = lab.sandboxes.get(owner[ns])
            is_container = sb is not None and sb.netns == ns
            for link in view.links.values():
                if link.kind == "loopback":
                    lab.interfaces.append(Interface(ns, link.ifname, Role.LOOPBACK, host=host,
                                                    sandbox=owner[ns]))
                    continue
                net = self.network_of_container_link(ns, link)
                if not is_container and link.kind == "bridge":
                    netw = bridges.get((ns, link.ifname))
                    lab.interfaces.append(Interface(ns, link.ifname, Role.BRIDGE, host=host,
                                                    sandbox=owner[ns], kind="bridge", mac=link.mac,
                                                    network=netw.name if netw else None))
                    continue
                if not is_container and link.kind == "vxlan":
                    netw = bridges.get((ns, "br0"))
                    lab.interfaces.append(Interface(ns, link.ifname, Role.VXLAN, host=host,
                                                    sandbox=owner[ns], kind="vxlan", mac=link.mac,
                                                    network=netw.name if netw else None))
                    continue
                if not is_container and link.master in view.links:
                    continue                         # a bridge port: handled as a veth peer below
                itf = Interface(ns, link.ifname, Role.CONTAINER, host=host, sandbox=owner[ns],
                                network=net, kind=link.kind, mac=link.mac)
                lab.interfaces.append(itf)
                if link.kind == "macvlan" and link.peer_index in host_view.links:
                    itf.peer = f"{self.host_ns}/{host_view.links[link.peer_index].ifname}"
                elif link.kind == "veth":
                    found = self.find_peer(ns, link, owner)
                    if found:
                        peer_ns, peer = found
                        itf.peer = f"{peer_ns}/{peer.ifname}"
                        peer_of[(peer_ns, peer.index)] = (ns, link, net)
                        if sb is not None and is_container:
                            for ep in sb.endpoints:
                                if ep.ifname == link.ifname:
                                    ep.host_ifname, ep.host_netns = peer.ifname, peer_ns
        # host side and overlay-sandbox bridge ports
        for ns, view in self.views.items():
            if ns != self.host_ns and (ns not in owner or owner[ns] in lab.sandboxes):
                continue
            for link in view.links.values():
                if ns == self.host_ns and link.kind == "loopback":
                    lab.interfaces.append(Interface(ns, link.ifname, Role.LOOPBACK, host=host))
                    continue
                sbox = None if ns == self.host_ns else owner[ns]
                if (ns, link.index) in peer_of:
                    cns, clink, net = peer_of[(ns, link.index)]
                    lab.interfaces.append(Interface(
                        ns, link.ifname, Role.VETH_HOST, host=host, sandbox=sbox, network=net,
                        kind=link.kind, mac=link.mac, peer=f"{cns}/{clink.ifname}"))
                elif ns == self.host_ns and (ns, link.ifname) in bridges:
                    lab.interfaces.append(Interface(ns, link.ifname, Role.BRIDGE, host=host,
                                                    network=bridges[(ns, link.ifname)].name,
                                                    kind=link.kind, mac=link.mac))
                elif ns == self.host_ns and link.ifname in parents:
                    lab.interfaces.append(Interface(ns, link.ifname, Role.MACVLAN_PARENT,
                                                    host=host, network=parents[link.ifname].name,
                                                    kind=link.kind, mac=link.mac))
                elif ns == self.host_ns:
                    lab.interfaces.append(Interface(ns, link.ifname, Role.UPLINK, host=host,
                                                    kind=link.kind, mac=link.mac))

    def network_of_container_link(self, ns: str, link: Link) -> str | None:
        """By endpoint MAC for containers; by subnet for ingress_sbox and lb_* endpoints."""
        for sandbox in self.lab.sandboxes.values():
            if sandbox.netns == ns:
                for ep in sandbox.endpoints:
                    if ep.mac == link.mac:
                        return ep.network
        for addr in link.addresses:
            ip = ipaddress.ip_interface(addr).ip
            for net in self.lab.networks:
                if net.subnet and ip in ipaddress.ip_network(net.subnet):
                    return net.name
        return None

    def find_peer(self, ns: str, link: Link, owner: dict[str, str]) -> tuple[str, Link] | None:
        """The other end of a veth: the link whose index is our IFLA_LINK and whose IFLA_LINK is
        our index, in dockerd's namespace or an overlay sandbox."""
        candidates = []
        for other_ns, view in self.views.items():
            if other_ns == ns:
                continue
            peer = view.links.get(link.peer_index)
            if peer is not None and peer.kind == "veth" and peer.peer_index == link.index:
                candidates.append((other_ns, peer))
        if len(candidates) > 1:                     # same index pair in two namespaces: rare
            infra = [c for c in candidates if c[0] == self.host_ns or
                     os.path.basename(c[0]).startswith(OVERLAY_SANDBOX_PREFIX)]
            candidates = infra or candidates
        return candidates[0] if candidates else None


def _gateway(subnet: str, bridge: Link | None) -> str:
    """Docker leaves the gateway out of IPAM config when it chose it: a bridge carries it as its
    address; otherwise it is the subnet's first host, as Docker's IPAM allocates it."""
    net = ipaddress.ip_network(subnet)
    for addr in bridge.addresses if bridge else []:
        ip = ipaddress.ip_interface(addr).ip
        if ip in net:
            return str(ip)
    return str(next(net.hosts()))


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _published(raw: dict) -> list[str]:
    """Port bindings as the lab model writes them: [hostip:]8080:80/tcp (IPv4 and wildcard
    bindings; an IPv6 host address is not in the model)."""
    out = []
    bindings = (raw.get("HostConfig") or {}).get("PortBindings") or {}
    for cport, binds in sorted(bindings.items()):
        port, _, proto = cport.partition("/")
        for b in binds or []:
            host_ip = b.get("HostIp") or ""
            if ":" in host_ip:
                continue
            prefix = f"{host_ip}:" if host_ip else ""
            text = f"{prefix}{b.get('HostPort') or port}:{port}/{proto or 'tcp'}"
            try:
                out.append(str(PublishedPort.parse(text)))
            except ValueError:
                continue                             # a port range or random port: not modelled
    return out
