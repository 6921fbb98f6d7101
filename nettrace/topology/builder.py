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

import ipaddress
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from nettrace.errors import NettraceError, require_root
from nettrace.topology import firewall, netns, state
from nettrace.topology.context import BuildContext, Progress, random_mac
from nettrace.topology.drivers.base import Driver, SandboxWiring
from nettrace.topology.ipam import UNDERLAY, UNDERLAY6, Ipam
from nettrace.topology.model import STATE_DIR, Host, Interface, Lab, Role, running_labs
from nettrace.topology.spec import LabSpec, NetworkSpec


def up(spec: LabSpec, *, progress: Progress | None = None,
       drivers: Mapping[str, Driver] | None = None,
       sandboxes: SandboxWiring | None = None) -> Lab:
    """Create every namespace, link, address, route, rule and sysctl of the lab.

    `drivers` maps Docker's driver names to the drivers that wire them and `sandboxes`
    wires containers' namespaces; by default nettrace's own (`nettrace.topology.drivers`)."""
    require_root("bringing a lab up")
    from nettrace.topology.drivers import DRIVERS, SANDBOXES, check_kernel_support
    drivers = DRIVERS if drivers is None else drivers
    sandboxes = SANDBOXES if sandboxes is None else sandboxes
    check_kernel_support(spec)               # refuse missing kernel features before building
    from nettrace.topology.spec import check_engine_support
    check_engine_support(spec)               # and what the engine profile cannot do
    if spec.name in running_labs() or state.lab_namespaces(spec.name):
        raise NettraceError(f"lab '{spec.name}' is already up (nettrace lab down {spec.name})")
    say = progress or (lambda msg: None)
    lab = Lab(name=spec.name, source=spec.file, pid=os.getpid(), created=time.time(),
              engine=spec.engine)
    reserved = [n.subnet for n in spec.networks if n.subnet and not n.builtin]
    ctx = BuildContext(lab=lab, spec=spec, ipam=Ipam(reserved), progress=say)
    ctx.ipam.reserved6 = [ipaddress.IPv6Network(n.subnet_v6) for n in spec.networks if n.subnet_v6]
    try:
        _build(ctx, drivers, sandboxes)
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


def _build(ctx: BuildContext, drivers: Mapping[str, Driver],
           sandboxes: SandboxWiring) -> None:
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
        sandbox = sandboxes.create_sandbox(ctx, ctr)
        for att in ctr.networks:
            net_spec = spec.network(att.network)
            drivers[net_spec.driver].join(ctx, net_spec, sandbox, att)
        sandboxes.finish_sandbox(ctx, sandbox, ctr)
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
    import shlex
    for key, command, entries, wheres, applied in (
            ("firewall", "iptables", hspec.firewall, hspec.firewall_where, host.firewall),
            ("firewall6", "ip6tables", hspec.firewall6, hspec.firewall6_where, host.firewall6)):
        for j, (entry, where) in enumerate(zip(entries, wheres)):
            proc = netns.run(host.netns, [command, "-w", *shlex.split(entry)], check=False)
            if proc.returncode != 0:
                why = (proc.stderr.strip().splitlines() or ["failed"])[0]
                raise SpecError(f"{command} {entry}: {why}", file=where.file, line=where.line,
                                field=f"{hspec.field}.{key}[{j}]")
            applied.append(entry)


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
    state_file = os.path.join(STATE_DIR, f"{name}.json")
    signalled = _stop_lab_processes(name)
    report.processes = len(signalled)
    namespaces = state.lab_namespaces(name)
    # a process living in one of them keeps that namespace (and its bridge, rules, a trace
    # table) alive after the mount is gone: an orphan of a killed nettrace, a `lab exec`,
    # a docker-proxy (SIGTERM, then SIGKILL after a grace period)
    report.processes += _kill_processes_in(namespaces, signalled)
    from nettrace.topology import proxy, sandbox_files
    report.processes += proxy.stop_in(namespaces)   # proxies a pid file never recorded
    if not namespaces and not os.path.exists(state_file) and not quiet:
        raise NettraceError(f"no lab named '{name}' is up (see: nettrace lab ls)")
    # All of a lab's namespaces go together, so the kernel reaps their links (veth pairs,
    # bridges, vxlan, macvlan) and rules in one batch; nothing of it lives anywhere else.
    report.links = state.count_links(name)
    for ns in namespaces:
        netns.remove(ns)
        report.namespaces += 1
    for path in (state_file, state_file + ".tmp"):
        if os.path.exists(path):
            os.unlink(path)
    sandbox_files.remove(name)
    return report


def down_all() -> list[DownReport]:
    """Every lab: those with a state file and leftovers found only by namespace name."""
    return [down(n, quiet=True) for n in state.lab_names()]


def _stop_lab_processes(name: str) -> list[int]:
    """End helper processes a lab started (embedded DNS, listeners, docker-proxy), by the PID
    we recorded: a pid file "PID" names one of our Python processes, "PID NETNS-INODE" a
    binary (docker-proxy) that must still run in the namespace it was started in."""
    stopped = []
    for path in state.pidfiles():
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
