"""Docker 29's firewall with the iptables backend (Docker's own rule documents,
moby integration/network/bridge/iptablesdoc; docker-drivers.md §7.2).

filter: FORWARD jumps to DOCKER-USER (left empty for the user) and DOCKER-FORWARD, which runs
DOCKER-CT (accept replies to each bridge), DOCKER-INTERNAL (--internal networks), DOCKER-BRIDGE
(to the DOCKER chain per bridge), then each network's own accept/ICC rules. DOCKER holds the
per-port accepts (newest container first) above each network's final drop of anything
routed in that it did not publish. raw PREROUTING drops packets sent straight to a container
address from outside its bridge (gateway mode nat/isolated), and remote packets to a port
published on a loopback address. nat: DNAT per published port, MASQUERADE (or SNAT to
com.docker.network.host_ipv4) per network; without the userland proxy, the hairpin forms.

Gateway modes: nat (default), nat-unprotected (every port open, no raw drop), routed (no NAT,
ICMP accepted, no raw drop), isolated (no NAT, no ports).
"""

from __future__ import annotations


from nettrace.topology.firewall.base import (Family, IptablesDoc, Ruleset, bridges,
                                             builtin_policies, published)
from nettrace.topology.firewall.layouts import IptablesLayout, direct_access_guarded
from nettrace.topology.firewall.purposes import RulePurpose as P
from nettrace.topology.model import GatewayMode, Host, Lab

NAT_MODES = (GatewayMode.NAT, GatewayMode.NAT_UNPROTECTED)


class Docker29Iptables(IptablesLayout):
    """IPv6 rules in the same layout unless engine.ip6tables is off (on by default since 27)."""

    name = "docker29-iptables"

    def _render(self, lab: Lab, host: Host, fam: Family) -> Ruleset:
        proxy = lab.engine.userland_proxy
        nets = [n for n in bridges(lab, host) if fam.subnet(n)]   # networks of this family
        newest_first = list(reversed(nets))
        external = [n for n in nets if not n.internal]
        ports = [p for p in published(lab, host)
                 if fam.mode(p.network) != GatewayMode.ISOLATED and fam.port_ip(p)]
        doc = IptablesDoc()

        # -- raw: direct access to container addresses, remote access to loopback ports
        doc.table("raw", builtin_policies("raw"), [])
        for ep, n in direct_access_guarded(lab, host, nets, fam):
            doc.add("raw", "PREROUTING", f"-d {fam.host(fam.addr(ep))} ! -i {n.device} -j DROP",
                    P.DIRECT_ACCESS, n.name)
        for p in ports:
            if p.host_ip and fam.loopback(p.host_ip) and fam.mode(p.network) in NAT_MODES:
                doc.add("raw", "PREROUTING", f"-d {fam.host(p.host_ip)} ! -i lo -p {p.proto} -m {p.proto} "
                        f"--dport {p.host_port} -j DROP", P.REMOTE_LOOPBACK, p.network.name)

        # -- filter
        doc.table("filter", builtin_policies("filter", FORWARD="DROP"),
                  ["DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL",
                   "DOCKER-USER"])
        f = lambda chain, spec, purpose, net=None: doc.add("filter", chain, spec, purpose, net)
        f("FORWARD", "-j DOCKER-USER", P.DOCKER_USER)
        f("FORWARD", "-j DOCKER-FORWARD", P.DISPATCH)
        # per-port accepts are inserted at the head of DOCKER: newest container first
        for p in reversed(ports):
            if fam.mode(p.network) == GatewayMode.NAT_UNPROTECTED:
                continue
            br = p.network.device
            f("DOCKER", f"-d {fam.host(fam.port_ip(p))} ! -i {br} -o {br} -p {p.proto} -m {p.proto} "
                        f"--dport {p.port} -j ACCEPT", P.PUBLISHED_PORT, p.network.name)
        for n in external:
            br = n.device
            if fam.mode(n) == GatewayMode.ROUTED:
                f("DOCKER", f"-o {br} -p {fam.icmp} -j ACCEPT", P.ROUTED_ICMP, n.name)
            if fam.mode(n) == GatewayMode.NAT_UNPROTECTED:
                f("DOCKER", f"! -i {br} -o {br} -j ACCEPT", P.UNPROTECTED, n.name)
            else:
                f("DOCKER", f"! -i {br} -o {br} -j DROP", P.UNPUBLISHED_PORT_DROP, n.name)
        for n in external:
            f("DOCKER-BRIDGE", f"-o {n.device} -j DOCKER", P.DISPATCH, n.name)
        for n in external:
            f("DOCKER-CT", f"-o {n.device} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
              P.CONNTRACK_ESTABLISHED, n.name)
        for chain in ("DOCKER-CT", "DOCKER-INTERNAL", "DOCKER-BRIDGE"):
            f("DOCKER-FORWARD", f"-j {chain}", P.DISPATCH)
        for n in nets:
            br = n.device
            if n.internal:
                f("DOCKER-FORWARD", f"-i {br} -o {br} -j {'ACCEPT' if n.icc else 'DROP'}", P.ICC,
                  n.name)
            elif n.icc:
                f("DOCKER-FORWARD", f"-i {br} -j ACCEPT", P.OUTGOING, n.name)
            else:
                f("DOCKER-FORWARD", f"-i {br} -o {br} -j DROP", P.ICC, n.name)
                f("DOCKER-FORWARD", f"-i {br} ! -o {br} -j ACCEPT", P.OUTGOING, n.name)
        for n in newest_first:              # each internal network's pair inserted at the head
            if n.internal:
                f("DOCKER-INTERNAL", f"! -s {fam.subnet(n)} -o {n.device} -j DROP", P.INTERNAL,
                  n.name)
                f("DOCKER-INTERNAL", f"! -d {fam.subnet(n)} -i {n.device} -j DROP", P.INTERNAL,
                  n.name)

        # -- nat
        doc.table("nat", builtin_policies("nat"), ["DOCKER"])
        t = lambda chain, spec, purpose, net=None: doc.add("nat", chain, spec, purpose, net)
        t("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER", P.DISPATCH)
        t("OUTPUT", (f"! -d {fam.loopback_net} " if proxy else "") +
          "-m addrtype --dst-type LOCAL -j DOCKER", P.DISPATCH)
        for n in newest_first:
            if n.internal or fam.mode(n) not in NAT_MODES:
                continue
            if not proxy:
                t("POSTROUTING", f"-o {n.device} -m addrtype --src-type LOCAL -j MASQUERADE",
                  P.HAIRPIN, n.name)
            if n.host_ipv4 and fam.version == 4:
                t("POSTROUTING", f"-s {n.subnet} ! -o {n.device} -j SNAT --to-source {n.host_ipv4}",
                  P.SNAT, n.name)
            elif n.masquerade:
                t("POSTROUTING", f"-s {fam.subnet(n)} ! -o {n.device} -j MASQUERADE", P.MASQUERADE,
                  n.name)
        nat_ports = [p for p in ports if fam.mode(p.network) in NAT_MODES]
        if not proxy:
            for p in nat_ports:
                ip = fam.host(fam.port_ip(p))
                t("POSTROUTING", f"-s {ip} -d {ip} -p {p.proto} -m {p.proto} "
                                 f"--dport {p.port} -j MASQUERADE", P.HAIRPIN, p.network.name)
        for p in nat_ports:
            dst = f"-d {fam.host(p.host_ip)} " if p.host_ip else ""
            src = "" if not proxy else f"! -i {p.network.device} "
            t("DOCKER", f"{dst}{src}-p {p.proto} -m {p.proto} --dport {p.host_port} "
                        f"-j DNAT --to-destination {fam.endpoint(fam.port_ip(p), p.port)}", P.DNAT,
              p.network.name)
        return doc.ruleset()
