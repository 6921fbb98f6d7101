"""Bring a lab up from its spec, and take labs down without a trace.

`up()` is the only code that creates kernel objects for a lab. It works in namespaces
named nt.<lab>.<...> (never in the root namespace), with one pyroute2 netlink socket per
namespace, and records every namespace and interface in the `Lab` it returns. If anything
fails half-way, everything already created is removed before the error is raised.

`down()` does not trust the state file alone: it finds the lab's namespaces by name, so it
also cleans up after a process that was killed in the middle of `up()`, and it ends any
process still living in those namespaces (an orphan of a killed nettrace would keep a
namespace, with its links and rules, alive after its name is gone).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

from nettrace.errors import NettraceError, require_root
from nettrace.topology import firewall, netns
from nettrace.topology.ipam import UNDERLAY, UNDERLAY6, Ipam
from nettrace.topology.model import (NS_PREFIX, STATE_DIR, Host, Interface, Lab, Network, Role,
                                     Scope, ns_name, running_labs)
from nettrace.topology.spec import LabSpec, NetworkSpec

Progress = Callable[[str], None]


def net_id(lab: str, network: str) -> str:
    """A stable 64-hex network id, as Docker shows them (br-<first 12>)."""
    return hashlib.sha256(f"nettrace/{lab}/{network}".encode()).hexdigest()


def short_hash(*parts: str, n: int = 7) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:n]


def random_mac(*seed: str) -> str:
    """02:42 + 4 bytes: Docker's bridge MAC layout, stable for a given lab."""
    h = hashlib.sha1("/".join(seed).encode()).digest()
    return "02:42:" + ":".join(f"{b:02x}" for b in h[:4])


@dataclass
class BuildContext:
    """What drivers need while building: the lab so far, netlink sockets, IPAM."""

    lab: Lab
    spec: LabSpec
    ipam: Ipam
    progress: Progress
    driver_state: dict = field(default_factory=dict)   # per-build scratch space of drivers
    _sockets: dict = field(default_factory=dict)

    def ipr(self, ns: str):
        """The netlink socket living in namespace `ns` (one per namespace, reused)."""
        sock = self._sockets.get(ns)
        if sock is None:
            sock = self._sockets[ns] = netns.iproute(ns)
        return sock

    def new_netns(self, *parts: str) -> str:
        name = ns_name(self.lab.name, *parts)
        netns.create(name)
        self.lab.namespaces.append(name)
        return name

    def record(self, itf: Interface) -> Interface:
        self.lab.interfaces.append(itf)
        return itf

    def index(self, ns: str, ifname: str) -> int:
        """ifindex by name with one RTM_GETLINK (no dump: hosts have hundreds of veths)."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            return self.ipr(ns).link("get", ifname=ifname)[0]["index"]
        except NetlinkError:
            raise NettraceError(f"interface {ifname} not found in {ns}") from None

    def bridge_index(self, ns: str, bridge: str) -> int:
        key = ("bridge-index", ns, bridge)
        if key not in self.driver_state:
            self.driver_state[key] = self.index(ns, bridge)
        return self.driver_state[key]

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def up(spec: LabSpec, *, progress: Progress | None = None) -> Lab:
    """Create every namespace, link, address, route, rule and sysctl of the lab."""
    require_root("bringing a lab up")
    from nettrace.topology.drivers import DRIVERS, check_kernel_support
    check_kernel_support(spec)               # refuse missing kernel features before building
    from nettrace.topology.spec import check_engine_support
    check_engine_support(spec)               # and what the engine profile cannot do
    if spec.name in running_labs() or _lab_namespaces(spec.name):
        raise NettraceError(f"lab '{spec.name}' is already up (nettrace lab down {spec.name})")
    say = progress or (lambda msg: None)
    lab = Lab(name=spec.name, source=spec.file, pid=os.getpid(), created=time.time(),
              engine=spec.engine)
    reserved = [n.subnet for n in spec.networks if n.subnet and not n.builtin]
    ctx = BuildContext(lab=lab, spec=spec, ipam=Ipam(reserved), progress=say)
    ctx.ipam.reserved6 = [ipaddress.IPv6Network(n.subnet_v6) for n in spec.networks if n.subnet_v6]
    try:
        _build(ctx, DRIVERS)
        lab.save()
        from nettrace.topology import dns, listeners, proxy, sandbox_files
        sandbox_files.write(lab)             # resolv.conf, hosts, hostname per container
        dns.start(lab)                       # reads the saved state; stopped by down()
        listeners.start(lab)                 # `listen:` sockets, same lifetime as the DNS
        proxy.start(lab)                     # docker-proxy per published port (userland proxy)
    except BaseException:
        ctx.close()
        down(spec.name, quiet=True)
        raise
    ctx.close()
    return lab


def _build(ctx: BuildContext, drivers: dict) -> None:
    spec, lab = ctx.spec, ctx.lab
    if spec.needs_underlay:
        _underlay(ctx)
    for i, name in enumerate(spec.hosts):
        _host(ctx, name, i)
    for i, name in enumerate(spec.clients):
        _client(ctx, name, i)

    # Networks, per host for local scope (Docker's networks are per engine), in file order.
    say = ctx.progress
    for net_spec in _ordered_networks(spec):
        for host in _hosts_of(spec, net_spec):
            drivers[net_spec.driver].create_network(ctx, net_spec, host)
    say(f"networks: {', '.join(sorted({n.name for n in lab.networks}))}")

    for ctr in spec.containers:
        sandbox = drivers["sandbox"].create_sandbox(ctx, ctr)
        for att in ctr.networks:
            net_spec = spec.network(att.network)
            drivers[net_spec.driver].join(ctx, net_spec, sandbox, att)
        drivers["sandbox"].finish_sandbox(ctx, sandbox, ctr)
    say(f"containers: {len(spec.containers)}")

    for driver in {id(d): d for d in drivers.values()}.values():
        driver.finish(ctx)
    for host in lab.hosts.values():
        firewall.apply_host(lab, host)
        _host_settings(ctx, host)
        if host.firewall:
            firewall.reindex_host(lab, host)      # the lab's entries are the user's rules
    for client in lab.clients.values():
        _host_settings(ctx, client)
    for node in list(lab.hosts.values()) + list(lab.clients.values()):
        _routes(ctx, node)
    firewall.apply_sandboxes(lab)


def _host_settings(ctx: BuildContext, host: Host) -> None:
    """The lab's own sysctls and iptables entries for `host`, after Docker's (in file order).

    Errors name the lab file, line and field; up() then removes everything it created."""
    from nettrace.errors import SpecError
    hspec = ctx.spec.host_specs.get(host.name)
    if hspec is None:
        return
    for key, value in hspec.sysctls.items():
        field_name = f"{hspec.field}.sysctls.{key}"
        where = hspec.sysctls_where.get(key, hspec.where)
        try:
            netns.sysctl_write(host.netns, key, value)
        except FileNotFoundError:
            raise where.error(field_name, f"no sysctl {key} in {host.name}'s namespace "
                              f"(an interface name that does not exist?)") from None
        except OSError as exc:
            raise where.error(field_name, f"cannot set {key}={value}: {exc.strerror}") \
                from None
        host.sysctls[key] = value
    for j, (entry, where) in enumerate(zip(hspec.firewall, hspec.firewall_where)):
        import shlex
        proc = netns.run(host.netns, ["iptables", "-w", *shlex.split(entry)], check=False)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["failed"])[0]
            raise SpecError(f"iptables {entry}: {why}", file=where.file, line=where.line,
                            field=f"{hspec.field}.firewall[{j}]")
        host.firewall.append(entry)


def _routes(ctx: BuildContext, node: Host) -> None:
    """The lab's static routes of a host or client, via another node's underlay address."""
    from pyroute2.netlink.exceptions import NetlinkError
    hspec = ctx.spec.host_specs.get(node.name)
    if hspec is None:
        return
    lab = ctx.lab
    for j, (route, where) in enumerate(zip(hspec.routes, hspec.routes_where)):
        dst, via = route.split(" via ")
        other = lab.hosts.get(via) or lab.clients.get(via)
        gateway = other.address if other is not None else via
        try:
            ctx.ipr(node.netns).route("add", dst=dst, gateway=gateway)
        except NetlinkError as exc:
            raise where.error(f"{hspec.field}.routes[{j}]", f"cannot add route {dst} via "
                              f"{gateway}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
        node.routes.append(route)             # as the lab file writes it ("via host2")


def _ordered_networks(spec: LabSpec) -> list[NetworkSpec]:
    """docker0 first, then docker_gwbridge (swarm hosts), then user networks in file order."""
    nets = [n for n in spec.networks if n.name == "bridge"]
    if any(n.driver == "overlay" for n in spec.networks):
        nets.append(NetworkSpec(name="docker_gwbridge", driver="bridge", where=nets[0].where,
                                icc=False, bridge_name="docker_gwbridge"))
    return nets + [n for n in spec.networks if not n.builtin]


def _hosts_of(spec: LabSpec, net: NetworkSpec) -> list[str]:
    if net.driver == "overlay":
        return [None]                       # swarm scope: one network across hosts
    if net.host:
        return [net.host]
    if net.name in ("bridge", "docker_gwbridge"):
        return list(spec.hosts)             # every engine has docker0 (and gwbridge in a swarm)
    users = [c.host for c in spec.containers if any(a.network == net.name for a in c.networks)]
    return sorted(set(users), key=spec.hosts.index) or [spec.hosts[0]]


def _underlay(ctx: BuildContext) -> None:
    ns = ctx.new_netns("underlay")
    ctx.lab.underlay_netns, ctx.lab.underlay_subnet = ns, str(UNDERLAY)
    ctx.lab.underlay_mtu = ctx.spec.underlay_mtu or 1500
    ipr = ctx.ipr(ns)
    ipr.link("add", ifname="lan0", kind="bridge", mtu=ctx.lab.underlay_mtu)
    ipr.link("set", index=ctx.index(ns, "lan0"), state="up")
    # a plain switch: bridged frames must not traverse iptables here
    netns.sysctl_write(ns, "net.bridge.bridge-nf-call-iptables", 0)
    netns.sysctl_write(ns, "net.bridge.bridge-nf-call-ip6tables", 0)
    ctx.record(Interface(ns, "lan0", Role.UNDERLAY, kind="bridge"))


def _uplink(ctx: BuildContext, node_ns: str, port: str, address: str, owner: str,
            is_client: bool, address6: str | None = None) -> None:
    """eth0 of a host or client, plugged into the underlay switch as port `port`."""
    under = ctx.lab.underlay_netns
    ipr = ctx.ipr(under)
    mac = random_mac(ctx.lab.name, "uplink", owner)
    mtu = ctx.lab.underlay_mtu
    ipr.link("add", ifname=port, kind="veth", mtu=mtu,
             peer={"ifname": "eth0", "net_ns_fd": netns.path(node_ns), "address": mac, "mtu": mtu})
    ipr.link("set", index=ctx.index(under, port), master=ctx.index(under, "lan0"), state="up")
    node = ctx.ipr(node_ns)
    idx = ctx.index(node_ns, "eth0")
    node.addr("add", index=idx, address=address, prefixlen=UNDERLAY.prefixlen)
    if address6:
        node.addr("add", index=idx, address=address6, prefixlen=UNDERLAY6.prefixlen,
                  flags=0x02)                 # IFA_F_NODAD
    node.link("set", index=idx, state="up")
    ctx.record(Interface(under, port, Role.UNDERLAY, kind="veth", peer=f"{node_ns}/eth0"))
    ctx.record(Interface(node_ns, "eth0", Role.UPLINK, host=None if is_client else owner,
                         sandbox=owner if is_client else None, kind="veth", mac=mac,
                         peer=f"{under}/{port}"))


def _host(ctx: BuildContext, name: str, i: int) -> None:
    ns = ctx.new_netns(name)
    host = Host(name=name, netns=ns)
    if ctx.lab.underlay_netns:
        host.uplink, host.address = "eth0", str(UNDERLAY.network_address + 11 + i)
        if _has_ipv6(ctx.spec):
            host.address6 = str(UNDERLAY6.network_address + 0x11 + i)
        _uplink(ctx, ns, f"p-{name}"[:15], host.address, name, False, host.address6)
    # What dockerd does to its own namespace (docker-drivers.md §2.2, §11, §12).
    netns.sysctl_write(ns, "net.ipv4.ip_forward", 1)
    netns.sysctl_write(ns, "net.bridge.bridge-nf-call-iptables", 1)
    # (Docker also raises net.ipv4.neigh.default.gc_thresh* for overlays: those exist only in
    # the root namespace, which nettrace never changes.)
    ctx.record(Interface(ns, "lo", Role.LOOPBACK, host=name))
    ctx.lab.hosts[name] = host


def _has_ipv6(spec: LabSpec) -> bool:
    return any(n.ipv6 for n in spec.networks)


def _client(ctx: BuildContext, name: str, i: int) -> None:
    ns = ctx.new_netns(name)
    client = Host(name=name, netns=ns, kind="client", uplink="eth0",
                  address=str(UNDERLAY.network_address + 100 + i))
    if _has_ipv6(ctx.spec):
        client.address6 = str(UNDERLAY6.network_address + 0x100 + i)
    _uplink(ctx, ns, f"p-{name}"[:15], client.address, name, True, client.address6)
    ctx.lab.clients[name] = client


# -- teardown ---------------------------------------------------------------------------

def _lab_namespaces(name: str) -> list[str]:
    prefix = f"{NS_PREFIX}.{name}."
    return [ns for ns in netns.list_all() if ns.startswith(prefix)]


@dataclass
class DownReport:
    lab: str
    namespaces: int = 0
    links: int = 0
    processes: int = 0


def down(name: str, *, quiet: bool = False) -> DownReport:
    """Remove every namespace, link and process of lab `name` (rules die with their namespace)."""
    require_root("taking a lab down")
    report = DownReport(name)
    state = os.path.join(STATE_DIR, f"{name}.json")
    signalled = _stop_lab_processes(name)
    report.processes = len(signalled)
    namespaces = _lab_namespaces(name)
    # a process living in one of them keeps that namespace (and its bridge, rules, a trace
    # table) alive after the mount is gone: an orphan of a killed nettrace, a `lab exec`,
    # a docker-proxy (SIGTERM, then SIGKILL after a grace period)
    report.processes += _kill_processes_in(namespaces, signalled)
    from nettrace.topology import proxy, sandbox_files
    report.processes += proxy.stop_in(namespaces)   # proxies a pid file never recorded
    if not namespaces and not os.path.exists(state) and not quiet:
        raise NettraceError(f"no lab named '{name}' is up (see: nettrace lab ls)")
    # All of a lab's namespaces go together, so the kernel reaps their links (veth pairs,
    # bridges, vxlan, macvlan) and rules in one batch; nothing of it lives anywhere else.
    report.links = _count_links(name)
    for ns in namespaces:
        netns.remove(ns)
        report.namespaces += 1
    for path in (state, state + ".tmp"):
        if os.path.exists(path):
            os.unlink(path)
    sandbox_files.remove(name)
    return report


def down_all() -> list[DownReport]:
    """Every lab: those with a state file and leftovers found only by namespace name."""
    names = set(running_labs())
    prefix = NS_PREFIX + "."
    for ns in netns.list_all():
        if ns.startswith(prefix) and ns.count(".") >= 2:
            names.add(ns.split(".")[1])
    for pidfile in _pidfiles():
        names.add(os.path.basename(pidfile).split(".")[0])
    return [down(n, quiet=True) for n in sorted(names)]


def _count_links(name: str) -> int:
    try:
        with open(os.path.join(STATE_DIR, f"{name}.json")) as f:
            import json
            return sum(1 for i in json.load(f).get("interfaces", []) if i["role"] != "loopback")
    except (OSError, ValueError):
        return 0


def _pidfiles() -> list[str]:
    try:
        return [os.path.join(STATE_DIR, f) for f in os.listdir(STATE_DIR) if f.endswith(".pid")]
    except FileNotFoundError:
        return []


def pidfile(lab: str, what: str) -> str:
    return os.path.join(STATE_DIR, f"{lab}.{what}.pid")


def _stop_lab_processes(name: str) -> list[int]:
    """End helper processes a lab started (embedded DNS, listeners, docker-proxy), by the PID
    we recorded: a pid file "PID" names one of our Python processes, "PID NETNS-INODE" a
    binary (docker-proxy) that must still run in the namespace it was started in."""
    stopped = []
    for path in _pidfiles():
        if not os.path.basename(path).startswith(name + "."):
            continue
        try:
            with open(path) as f:
                fields = f.read().split()
            pid = int(fields[0])
            if len(fields) > 1:
                ours = os.stat(f"/proc/{pid}/ns/net").st_ino == int(fields[1])
            else:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = b"nettrace" in f.read()
            if ours:
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
        except (ValueError, OSError):
            pass
        os.unlink(path)
    return stopped


def _kill_processes_in(namespaces: list[str], signalled: list[int] = (),
                       grace: float = 1.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds, every process (by PID) whose network
    namespace is one of the lab's; returns how many, leaving out `signalled` (PIDs already
    sent SIGTERM from a pid file). Only nettrace puts processes there (trace helpers,
    docker-proxy, `lab exec`, servers of golden cases): nothing else is ever signalled."""
    pids = netns.processes_in(namespaces)
    for pid in pids:
        if pid not in signalled:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid in netns.processes_in(namespaces)]
    for pid in alive:                       # still there, still in the lab: the same process
        _signal(pid, signal.SIGKILL)
    return len(set(pids) - set(signalled))


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def network_for(ctx: BuildContext, spec: NetworkSpec, host: str | None, *, device: str | None,
                netns_name: str | None, mtu: int, vni: int | None = None) -> Network:
    """Allocate the subnet and record a Network in the lab (shared by all drivers)."""
    space = "global" if spec.driver == "overlay" else host
    subnet = gateway = subnet_v6 = gateway_v6 = None
    if spec.driver not in ("host", "null") and spec.ipv6:
        net6 = ctx.ipam.subnet6(space, spec.subnet_v6, seed=f"{ctx.lab.name}/{space}")
        subnet_v6 = str(net6)
        gateway_v6 = spec.gateway_v6 or str(next(net6.hosts()))
        ctx.ipam.reserve(space, net6, gateway_v6)
        for c in ctx.spec.containers:
            for a in c.networks:
                if a.network == spec.name and a.ip6 and (host is None or c.host == host):
                    ctx.ipam.reserve(space, net6, a.ip6)
    if spec.driver not in ("host", "null") and spec.ipv4:
        net = ctx.ipam.subnet(space, spec.subnet, swarm=spec.driver == "overlay")
        subnet = str(net)
        gw = spec.gateway or str(next(net.hosts()))
        ctx.ipam.reserve(space, net, gw)
        # explicit container addresses are reserved before automatic ones are handed out
        for c in ctx.spec.containers:
            for a in c.networks:
                if a.network == spec.name and a.ip and (host is None or c.host == host):
                    ctx.ipam.reserve(space, net, a.ip)
        gateway = gw
    network = Network(
        name=spec.name, driver=spec.driver,
        scope=Scope.SWARM if spec.driver == "overlay" else Scope.LOCAL,
        id=net_id(ctx.lab.name, spec.name), host=host, subnet=subnet, gateway=gateway,
        device=device, netns=netns_name, mtu=mtu, icc=spec.icc, internal=spec.internal,
        masquerade=spec.masquerade and not spec.internal, vni=vni,
        gateway_mode=spec.gateway_mode, host_ipv4=spec.host_ipv4, ipv4=spec.ipv4,
        ipv6=spec.ipv6, subnet_v6=subnet_v6, gateway_v6=gateway_v6,
        options={k: v for k, v in (("mode", spec.mode if spec.driver in ("macvlan", "ipvlan") else None),
                                   ("parent", spec.parent)) if v})
    ctx.lab.networks.append(network)
    return network


def address_for(ctx: BuildContext, network: Network, wanted: str | None) -> str | None:
    """The endpoint's IPv4 address (None on an IPv6-only network)."""
    if not network.subnet:
        return None
    if wanted:
        return wanted                         # reserved in network_for()
    return str(ctx.ipam.allocate(network.host or "global", ipaddress.IPv4Network(network.subnet)))


def address6_for(ctx: BuildContext, network: Network, wanted: str | None) -> str | None:
    """The endpoint's IPv6 address on an IPv6 network, next free in order as Docker's IPAM."""
    if not network.subnet_v6:
        return None
    if wanted:
        return wanted
    return str(ctx.ipam.allocate(network.host or "global", ipaddress.IPv6Network(network.subnet_v6)))
