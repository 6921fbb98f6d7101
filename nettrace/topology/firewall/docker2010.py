"""Docker 20.10's firewall (docker-drivers.md §7.1), iptables-nft in the host namespace.

Each network's FORWARD block is inserted above older ones, ICC-off drops are appended,
internal networks get the two isolation drops, and a published port adds a DOCKER accept, a
DNAT and a hairpin MASQUERADE. The nat table follows `engine.userland_proxy`: with the proxy
(Docker's default, the layout recorded on a real 20.10 engine in
tests/fixtures/docker/recorded-facts.json) each bridge's own traffic and loopback are left to
docker-proxy; without it (hairpin mode) the DNAT and LOCAL-source MASQUERADE cover them.
"""

from __future__ import annotations

from nettrace.topology.firewall.base import (Family, IptablesDoc, Ruleset, bridges,
                                             builtin_policies, published)
from nettrace.topology.firewall.layouts import IptablesLayout
from nettrace.topology.firewall.purposes import RulePurpose as P
from nettrace.topology.model import Host, Lab


class Docker2010(IptablesLayout):
    """IPv6 rules only with engine.ip6tables (off by default in 20.10)."""

    name = "docker2010"

    def _render(self, lab: Lab, host: Host, fam: Family) -> Ruleset:
        nets = [n for n in bridges(lab, host) if fam.subnet(n)]
        newest_first = list(reversed(nets))
        doc = IptablesDoc()
        doc.table("filter", builtin_policies("filter", FORWARD="DROP"),
                  ["DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER"])
        f = lambda chain, spec, purpose, net=None: doc.add("filter", chain, spec, purpose, net)
        f("FORWARD", "-j DOCKER-USER", P.DOCKER_USER)
        f("FORWARD", "-j DOCKER-ISOLATION-STAGE-1", P.ISOLATION)
        for n in newest_first:
            br = n.device
            if n.internal:
                if n.icc:
                    f("FORWARD", f"-i {br} -o {br} -j ACCEPT", P.ICC, n.name)
                continue
            f("FORWARD", f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
              P.CONNTRACK_ESTABLISHED, n.name)
            f("FORWARD", f"-o {br} -j DOCKER", P.DISPATCH, n.name)
            f("FORWARD", f"-i {br} ! -o {br} -j ACCEPT", P.OUTGOING, n.name)
            if n.icc:
                f("FORWARD", f"-i {br} -o {br} -j ACCEPT", P.ICC, n.name)
        for n in nets:
            if not n.icc:
                f("FORWARD", f"-i {n.device} -o {n.device} -j DROP", P.ICC, n.name)
        ports = [p for p in published(lab, host) if fam.port_ip(p)]
        for p in ports:
            br = p.network.device
            f("DOCKER", f"-d {fam.host(fam.port_ip(p))} ! -i {br} -o {br} -p {p.proto} -m {p.proto} "
                        f"--dport {p.port} -j ACCEPT", P.PUBLISHED_PORT, p.network.name)
        for n in newest_first:
            if n.internal:
                f("DOCKER-ISOLATION-STAGE-1", f"! -s {fam.subnet(n)} -o {n.device} -j DROP",
                  P.INTERNAL, n.name)
                f("DOCKER-ISOLATION-STAGE-1", f"! -d {fam.subnet(n)} -i {n.device} -j DROP",
                  P.INTERNAL, n.name)
            else:
                f("DOCKER-ISOLATION-STAGE-1",
                  f"-i {n.device} ! -o {n.device} -j DOCKER-ISOLATION-STAGE-2", P.ISOLATION, n.name)
        f("DOCKER-ISOLATION-STAGE-1", "-j RETURN", P.ISOLATION)
        for n in newest_first:
            if not n.internal:
                f("DOCKER-ISOLATION-STAGE-2", f"-o {n.device} -j DROP", P.ISOLATION, n.name)
        f("DOCKER-ISOLATION-STAGE-2", "-j RETURN", P.ISOLATION)
        f("DOCKER-USER", "-j RETURN", P.DOCKER_USER)

        # nat. Userland proxy off (hairpin mode): OUTPUT covers loopback too, LOCAL sources
        # are masqueraded, and the DNAT takes packets from the bridge itself, so containers
        # reach published ports through the host's address without a proxy. Userland proxy
        # on (Docker's default): loopback and each bridge's own traffic are left to
        # docker-proxy (`-i <br> -j RETURN`, `! -i <br>` on the DNAT), as recorded on 20.10.
        proxy = lab.engine.userland_proxy
        doc.table("nat", builtin_policies("nat"), ["DOCKER"])
        t = lambda chain, spec, purpose, net=None: doc.add("nat", chain, spec, purpose, net)
        t("PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER", P.DISPATCH)
        t("OUTPUT", (f"! -d {fam.loopback_net} " if proxy else "") +
          "-m addrtype --dst-type LOCAL -j DOCKER", P.DISPATCH)
        for n in newest_first:
            if not n.internal and not proxy:
                t("POSTROUTING", f"-o {n.device} -m addrtype --src-type LOCAL -j MASQUERADE",
                  P.HAIRPIN, n.name)
        for n in newest_first:
            if n.masquerade and not n.internal:
                t("POSTROUTING", f"-s {fam.subnet(n)} ! -o {n.device} -j MASQUERADE", P.MASQUERADE,
                  n.name)
        for p in ports:
            ip = fam.host(fam.port_ip(p))
            t("POSTROUTING", f"-s {ip} -d {ip} -p {p.proto} -m {p.proto} "
                             f"--dport {p.port} -j MASQUERADE", P.HAIRPIN, p.network.name)
        if proxy:
            for n in newest_first:
                if not n.internal:
                    t("DOCKER", f"-i {n.device} -j RETURN", P.DISPATCH, n.name)
        for p in ports:
            dst = f"-d {fam.host(p.host_ip)} " if p.host_ip else ""
            src = f"! -i {p.network.device} " if proxy else ""
            t("DOCKER", f"{dst}{src}-p {p.proto} -m {p.proto} --dport {p.host_port} "
                        f"-j DNAT --to-destination {fam.endpoint(fam.port_ip(p), p.port)}", P.DNAT,
              p.network.name)
        return doc.ruleset()
