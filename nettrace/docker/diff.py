"""How a nettrace lab differs from a live Docker engine with the same networks.

Both sides are reduced to the same normalised facts, read from the kernel and the model
alike: networks (driver, subnet, gateway, options), containers (endpoints, addresses, MTU,
routes, published ports, DNS), interfaces per namespace (role, kind, MTU, state, master,
hairpin), sysctls, iptables rules and the reachability matrix (a ping between every pair of
containers, sent inside their namespaces only). Names Docker makes up are replaced by the
views layer's aliases (nettrace.views.names: `br(mynet)` for br-<id>, `veth(c1)` for a veth
host end, also for overlay sandbox ports); MAC addresses keep only "derived from the IP" vs
"random"; embedded-DNS ports are masked. Nothing is changed on either side.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from nettrace.errors import NettraceError
from nettrace.topology import netns
from nettrace.topology.model import Lab, Role, Sandbox
from nettrace.topology.sandbox_files import uses_embedded_dns
from nettrace.views.names import Aliases, veth_alias, veth_peer

IGNORED_NETWORKS = ("host", "none", "ingress")          # built in, or routing mesh (no IPVS)
IGNORED_ROLES = (Role.UPLINK, Role.UNDERLAY)            # the lab's simulated wire, not Docker's
SANDBOX_SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.ping_group_range",
                   "net.ipv4.ip_unprivileged_port_start")
HOST_SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables")
OVERLAY_SYSCTLS = tuple(f"net.ipv4.neigh.default.gc_thresh{i}" for i in (1, 2, 3))
_DNS_PORT = re.compile(r"(127\.0\.0\.11:|--sport )\d+")     # the embedded DNS's own ports


@dataclass
class Difference:
    section: str                     # networks | containers | interfaces | sysctls | firewall | reachability
    key: str
    lab: str | None                  # None: absent on that side
    docker: str | None


@dataclass
class DiffReport:
    lab: str
    docker: str
    host: str
    differences: list[Difference] = field(default_factory=list)
    reachability: dict[str, dict[str, str]] = field(default_factory=dict)   # side -> pair -> ok|fail
    compared: dict[str, int] = field(default_factory=dict)                  # section -> facts

    @property
    def equivalent(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict:
        return {**asdict(self), "equivalent": self.equivalent}

    def text(self) -> str:
        """Human-readable report, one block per section."""
        facts = sum(self.compared.values())
        head = f"lab {self.lab} vs Docker {self.docker} (host {self.host}): "
        if self.equivalent:
            return head + f"equivalent ({facts} facts compared)\n"
        lines = [head + f"{len(self.differences)} difference(s) in {facts} facts"]
        for section in dict.fromkeys(d.section for d in self.differences):
            lines.append(f"  {section}")
            for d in self.differences:
                if d.section != section:
                    continue
                if section == "firewall":
                    sign = "-" if d.docker is None else "+"
                    side = "lab only" if d.docker is None else "docker only"
                    lines.append(f"    {sign} {d.key}: {d.lab or d.docker}   ({side})")
                else:
                    lines.append(f"    {d.key}: lab {_show(d.lab)} | docker {_show(d.docker)}")
        return "\n".join(lines) + "\n"


def _show(value: str | None) -> str:
    return "(absent)" if value is None else value or "''"


def mac_kind(mac: str | None, ipv4: str | None) -> str:
    """Docker 20.10 derives container MACs from the IPv4 address; later versions pick random ones."""
    if not mac:
        return "none"
    if ipv4 and mac.lower() == "02:42:" + ":".join(f"{int(b):02x}" for b in ipv4.split(".")):
        return "from-ip"
    return "random"


# -- facts --------------------------------------------------------------------------------

def restrict(docker: Lab, lab: Lab, host: str) -> tuple[Lab, set[str]]:
    """The part of a live engine that lab host `host` declares, and the names of the rest.

    Containers are the lab's, by name. Networks are matched by membership: a lab network is
    the engine network joined by the same declared containers (its other members, e.g. the
    busy engine's own containers on docker0, do not matter); a network no declared container
    joins is matched by name. Matched networks take the lab's names. The second value lists
    the engine's other devices, subnets and addresses, so that their links and rules are
    left out of the comparison. Pure: the models only.
    """
    import dataclasses
    declared = {n for n, sb in lab.sandboxes.items() if sb.host == host}

    def members(model: Lab, net_name: str, names: set[str]) -> set[str]:
        return {sb.name for sb in model.sandboxes.values() if sb.name in names and
                any(ep.network == net_name for ep in sb.endpoints)}

    engine_nets = [n for n in docker.networks if n.name not in IGNORED_NETWORKS]
    rename: dict[str, str] = {}                  # engine network name -> lab network name
    for net in lab.networks:
        if net.name in IGNORED_NETWORKS or net.host not in (None, host):
            continue
        want = members(lab, net.name, declared)
        candidates = [n for n in engine_nets if n.driver == net.driver and
                      n.name not in rename and
                      (members(docker, n.name, declared) == want if want else n.name == net.name)]
        candidates.sort(key=lambda n: n.name != net.name)        # same name first
        if candidates:
            rename[candidates[0].name] = net.name
    kept_nets = [dataclasses.replace(n, name=rename[n.name]) for n in docker.networks
                 if n.name in rename]
    view = dataclasses.replace(docker, networks=kept_nets, sandboxes={}, interfaces=[])
    foreign: set[str] = set()
    for n in engine_nets:
        if n.name not in rename:
            foreign.update(x for x in (n.subnet, n.device if n.driver == "bridge" else None) if x)
    kept_ns = set()
    for name, sb in docker.sandboxes.items():
        if name not in declared:
            foreign.update(ep.ipv4 for ep in sb.endpoints if ep.ipv4)
            continue
        eps = [dataclasses.replace(ep, network=rename[ep.network]) for ep in sb.endpoints
               if ep.network in rename]
        foreign.update(ep.ipv4 for ep in sb.endpoints if ep.network not in rename and ep.ipv4)
        view.sandboxes[name] = dataclasses.replace(sb, endpoints=eps)
        if sb.network_mode != "host":
            kept_ns.add(sb.netns)
    for itf in docker.interfaces:
        peer_ns = itf.peer.rpartition("/")[0] if itf.peer else None
        if itf.role is Role.VETH_HOST and peer_ns not in kept_ns and not (
                itf.network in rename and peer_ns is None):
            foreign.add(itf.ifname)                  # another container's host-side veth
            continue
        if itf.role is Role.BRIDGE and itf.network is not None and itf.network not in rename:
            continue
        view.interfaces.append(dataclasses.replace(
            itf, network=rename.get(itf.network, itf.network)))
    return view, foreign


def mentions(names: set[str]) -> re.Pattern | None:
    """A pattern finding any of `names` (devices, subnets, addresses) as a whole word of a
    rule: 172.18.0.2 matches "-d 172.18.0.2/32", not "172.18.0.20"."""
    if not names:
        return None
    return re.compile("(?<![\\w.:-])(" + "|".join(
        re.escape(x) for x in sorted(names, key=len, reverse=True)) + ")(?![\\w-]|\\.\\d)")


class _Facts:
    """Every normalised fact of one side, restricted to one Docker host."""

    def __init__(self, lab: Lab, host: str, ping: bool, exclude: set[str] | None = None):
        self.exclude = exclude or set()
        self._excluded = mentions(self.exclude)
        self.lab, self.host = lab, lab.hosts[host]
        self.alias = Aliases(lab, unknown=True)
        self.sandboxes = {n: sb for n, sb in lab.sandboxes.items() if sb.host == host}
        self.data: dict[str, dict[str, str]] = {s: {} for s in (
            "networks", "containers", "interfaces", "sysctls")}
        self.firewall: dict[str, list[str]] = {}
        self.reach: dict[str, str] = {}
        self.owner_of_ns = {self.host.netns: "host"}
        for sb in self.sandboxes.values():
            if sb.network_mode != "host":
                self.owner_of_ns[sb.netns] = sb.name
        self.networks = [n for n in lab.networks if n.name not in IGNORED_NETWORKS
                         and n.host in (None, host)]
        for net in self.networks:
            if net.driver == "overlay":
                # a swarm network has one sandbox per host: this host's holds its vxlan0
                ns = next((i.netns for i in lab.interfaces if i.role is Role.VXLAN and
                           i.network == net.name and i.host == host), net.netns)
                if ns:
                    self.owner_of_ns[ns] = f"overlay:{net.name}"
        self._networks()
        self._containers()
        self._interfaces()
        self._sysctls()
        self._firewall()
        if ping:
            self._reachability()

    def _networks(self) -> None:
        out = self.data["networks"]
        for n in self.networks:
            fields = {"driver": n.driver, "subnet": n.subnet, "gateway": n.gateway, "mtu": n.mtu,
                      "device": self.normalise(n.device or "")}
            if n.driver == "bridge":
                fields.update(icc=n.icc, internal=n.internal, masquerade=n.masquerade)
            elif n.driver == "overlay":
                fields.update(vni=n.vni, internal=n.internal)
            elif n.driver in ("macvlan", "ipvlan"):
                fields.update(parent=n.options.get("parent") or n.device,
                              mode=n.options.get("mode"), internal=n.internal)
            for k, v in fields.items():
                out[f"{n.name}.{k}"] = str(v)

    def _containers(self) -> None:
        out = self.data["containers"]
        for sb in self.sandboxes.values():
            out[f"{sb.name}.mode"] = sb.network_mode if sb.network_mode in ("host", "none") \
                else "bridge"
            out[f"{sb.name}.published"] = ",".join(sorted(sb.published))
            out[f"{sb.name}.dns"] = ("embedded" if uses_embedded_dns(sb)
                                     else "host copy" if sb.network_mode != "none" else "none")
            # the files Docker writes into the sandbox (its hostname is a random id: masked)
            out[f"{sb.name}.resolv.conf"] = sb.resolv_conf
            if sb.network_mode == "host":
                continue
            hosts = sb.etc_hosts
            if sb.hostname:
                hosts = re.sub(rf"\b{re.escape(sb.hostname)}\b", "<hostname>", hosts)
            out[f"{sb.name}.hosts"] = hosts
            out[f"{sb.name}.routes"] = "; ".join(sorted(
                " ".join(r.split()) for r in sb.routes))
            for ep in sb.endpoints:
                key = f"{sb.name}@{ep.network}"
                out[f"{key}.ifname"] = ep.ifname
                out[f"{key}.address"] = f"{ep.ipv4}/{ep.prefixlen}"
                out[f"{key}.mtu"] = str(ep.mtu)
                out[f"{key}.mac"] = mac_kind(ep.mac, ep.ipv4)

    def _interfaces(self) -> None:
        from nettrace.docker.discover import read_namespace
        out = self.data["interfaces"]
        by_ns = {}
        for itf in self.lab.interfaces:
            by_ns.setdefault(itf.netns, {})[itf.ifname] = itf
        for ns, owner in self.owner_of_ns.items():
            view = read_namespace(ns)
            listed = by_ns.get(ns, {})
            parents = {n.options.get("parent") or n.device for n in self.networks
                       if n.driver in ("macvlan", "ipvlan") and n.netns == ns}
            for link in view.links.values():
                itf = listed.get(link.ifname)
                if link.ifname in parents:
                    # a lab hangs macvlan off its uplink, an engine here off a veth end: compare
                    # what the children see (kind, MTU, carrier), not the wire behind it
                    out[f"{owner}:macvlan-parent"] = (f"{link.kind} mtu={link.mtu} "
                                                      f"{'up' if link.up else 'down'}")
                    continue
                if itf is not None and itf.role in IGNORED_ROLES:
                    continue
                if link.ifname in self.exclude:
                    continue                 # the engine's other networks and containers
                name = self._link_key(link.ifname, itf, link)
                if name.startswith(("veth(lb_", "veth(ingress_sbox")):
                    continue                 # routing mesh (IPVS): Docker-only, like ingress
                master = view.links.get(link.master)
                role = "loopback" if link.kind == "loopback" else itf.role.value if itf \
                    else "unlisted"
                value = [role, link.kind, f"mtu={link.mtu}",
                         "up" if link.up else "down"]
                if master:
                    value.append(f"master={self.normalise(master.ifname)}")
                if link.hairpin is not None:
                    value.append(f"hairpin={'on' if link.hairpin else 'off'}")
                if link.addresses:
                    value.append("addr=" + ",".join(sorted(link.addresses)))
                if link.kind != "loopback":
                    value.append("mac=" + mac_kind(link.mac, _first_ip(link.addresses)))
                out[f"{owner}:{name}"] = " ".join(value)

    def normalise(self, text: str) -> str:
        """Docker's hashed names as the views layer's aliases, the embedded DNS's ports masked."""
        return _DNS_PORT.sub(r"\1<port>", self.alias(text))

    def _link_key(self, ifname: str, itf, link) -> str:
        """veth<id> host ends and overlay veth<N> ports are named by the container end they
        serve, as the views layer names them (veth(c1), veth(c1:eth1))."""
        if itf is not None and itf.role is Role.VETH_HOST and itf.peer:
            peer_ns = itf.peer.rpartition("/")[0]
            owners = self.owner_of_ns if peer_ns in self.owner_of_ns else \
                {peer_ns: _special(peer_ns)}
            return veth_alias(*veth_peer(itf, owners))
        return self.normalise(ifname)

    def _sysctls(self) -> None:
        out = self.data["sysctls"]
        keys = list(HOST_SYSCTLS)
        if any(n.driver == "overlay" for n in self.networks):
            keys += OVERLAY_SYSCTLS
        for n in self.networks:
            if n.driver == "bridge" and n.device and n.netns == self.host.netns:
                keys.append(f"net.ipv4.conf.{n.device}.route_localnet")
        for key in keys:
            out[f"host:{self.normalise(key)}"] = _sysctl(self.host.netns, key)
        for sb in self.sandboxes.values():
            if sb.network_mode != "host":
                for key in SANDBOX_SYSCTLS:
                    out[f"{sb.name}:{key}"] = _sysctl(sb.netns, key)

    def _firewall(self) -> None:
        from nettrace.topology.firewall import dump
        self.firewall["host"] = [self.normalise(line)
                                 for line in dump(self.host.netns).splitlines()
                                 if not (self._excluded and self._excluded.search(line))]
        for sb in self.sandboxes.values():
            if sb.network_mode != "host":
                self.firewall[sb.name] = [self.normalise(ln)
                                          for ln in dump(sb.netns).splitlines()]

    def _reachability(self) -> None:
        """ping -c1 from every container to every other container's addresses."""
        targets = [(sb, ep) for sb in self.sandboxes.values() for ep in sb.endpoints]
        pairs = [(src, dst, ep) for src in self.sandboxes.values() if src.network_mode != "none"
                 for dst, ep in targets if dst.name != src.name]

        def ping(item: tuple[Sandbox, Sandbox, object]) -> tuple[str, str]:
            src, dst, ep = item
            proc = netns.run(src.netns, ["ping", "-c1", "-W1", "-q", ep.ipv4], check=False,
                             timeout=5)
            return f"{src.name} -> {dst.name}@{ep.network}", "ok" if proc.returncode == 0 else "fail"
        with ThreadPoolExecutor(max_workers=16) as pool:
            self.reach = dict(pool.map(ping, pairs))


def _special(ns: str) -> str:
    import os
    return os.path.basename(ns)          # ingress_sbox, lb_<id>: Docker-only sandboxes


def _first_ip(addresses: list[str]) -> str | None:
    return str(ipaddress.ip_interface(addresses[0]).ip) if addresses else None


def _sysctl(ns: str, key: str) -> str:
    try:
        return " ".join(netns.sysctl_read(ns, key).split())
    except FileNotFoundError:
        return "absent"


# -- the comparison -----------------------------------------------------------------------

def pick_host(lab: Lab, host: str | None) -> str:
    if host:
        if host not in lab.hosts:
            raise NettraceError(f"--host {host}: lab {lab.name} has hosts {', '.join(lab.hosts)}")
        return host
    if len(lab.hosts) != 1:
        raise NettraceError(f"lab {lab.name} has {len(lab.hosts)} Docker hosts "
                            f"({', '.join(lab.hosts)}); a Docker engine is one host: "
                            f"choose one with --host")
    return next(iter(lab.hosts))


def diff(lab: Lab, docker: Lab, *, host: str | None = None, ping: bool = True) -> DiffReport:
    """Compare lab host `host` (default: the only one) with the engine `docker` (discovered)."""
    lab_host = pick_host(lab, host)
    if len(docker.hosts) != 1:
        raise NettraceError(f"diff compares one lab host with one engine; {docker.source} has "
                            f"{len(docker.hosts)}: pass the engine that plays {lab_host}")
    docker_host = next(iter(docker.hosts))
    # only what the lab declares: a busy engine's other networks and containers are not
    # differences
    docker, foreign = restrict(docker, lab, lab_host)
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs_f = pool.submit(_Facts, docker, docker_host, ping, foreign)
        ours = _Facts(lab, lab_host, ping)
        theirs = theirs_f.result()
    report = DiffReport(lab=lab.name, docker=docker.source or "docker", host=lab_host)
    for key in ("version", "firewall", "userland_proxy"):          # the engine profile
        mine, real = (str(getattr(side.engine, key).value if key != "userland_proxy"
                          else getattr(side.engine, key)).lower() for side in (lab, docker))
        report.compared["engine"] = report.compared.get("engine", 0) + 1
        if mine != real:
            report.differences.append(Difference("engine", key, mine, real))
    for section in ours.data:
        a, b = ours.data[section], theirs.data[section]
        report.compared[section] = len(set(a) | set(b))
        for key in sorted(set(a) | set(b), key=_natural):
            if a.get(key) != b.get(key):
                report.differences.append(Difference(section, key, a.get(key), b.get(key)))
    owners = sorted(set(ours.firewall) | set(theirs.firewall), key=_natural)
    report.compared["firewall"] = sum(len(ours.firewall.get(o, [])) for o in owners)
    for owner in owners:
        mine, real = ours.firewall.get(owner, []), theirs.firewall.get(owner, [])
        for line in difflib.unified_diff(mine, real, lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            text = line[1:]
            # the same rule on both sides at another position: rule order matters in a chain
            key = f"{owner} (order)" if text in mine and text in real else owner
            report.differences.append(Difference(
                "firewall", key, text if line[0] == "-" else None,
                text if line[0] == "+" else None))
    if ping:
        report.reachability = {"lab": ours.reach, "docker": theirs.reach}
        report.compared["reachability"] = len(set(ours.reach) | set(theirs.reach))
        for pair in sorted(set(ours.reach) | set(theirs.reach), key=_natural):
            if ours.reach.get(pair) != theirs.reach.get(pair):
                report.differences.append(Difference("reachability", pair, ours.reach.get(pair),
                                                     theirs.reach.get(pair)))
    return report


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]
