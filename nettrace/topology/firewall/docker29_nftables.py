"""Docker 29's firewall with the nftables backend (`dockerd --firewall-backend=nftables`;
Docker's own rule documents, moby integration/network/bridge/nftablesdoc; docker-drivers.md
§7.4).

One table, `ip docker-bridges`, loaded with `nft -f` in the host's namespace: base chains
filter-FORWARD (verdict maps on the output and input interface jump to each bridge's
filter-forward-in__<br> / filter-forward-out__<br>), nat-PREROUTING and nat-OUTPUT (jump to
nat-prerouting-and-output, which holds the DNATs), nat-POSTROUTING (maps to
nat-postrouting-in__<br> / -out__<br>: masquerade) and raw-PREROUTING (direct-access and
remote-loopback drops). Rules carry Docker's comments ("ICC", "UNPUBLISHED PORT DROP",
"DROP DIRECT ACCESS", ...). There is no DOCKER-USER.

Differences from what dockerd writes, both forced by this machine's nft 1.0.6: nat-OUTPUT's
priority is written -100 (the value of `dstnat`, which 1.0.6 refuses on the output hook),
and filter-FORWARD's policy is drop, as Docker sets it when it enabled IP forwarding itself
(the documents were made on hosts that already forwarded: accept). Container embedded-DNS
rules stay iptables ones (Docker's `ip docker-dns` table is not reproduced).
"""

from __future__ import annotations

from nettrace.topology import netns
from nettrace.topology.firewall import index
from nettrace.topology.firewall.base import Family, RenderedRule, Ruleset, bridges, published
from nettrace.topology.firewall.layouts import TwoFamilies, direct_access_guarded
from nettrace.topology.firewall.purposes import RulePurpose as P
from nettrace.topology.model import FwRule, GatewayMode, Host, Lab

TABLE = "docker-bridges"
NAT_MODES = (GatewayMode.NAT, GatewayMode.NAT_UNPROTECTED)
BASE_CHAINS = {
    "filter-FORWARD": "type filter hook forward priority filter; policy drop;",
    "nat-OUTPUT": "type nat hook output priority -100; policy accept;",
    "nat-POSTROUTING": "type nat hook postrouting priority srcnat; policy accept;",
    "nat-PREROUTING": "type nat hook prerouting priority dstnat; policy accept;",
    "raw-PREROUTING": "type filter hook prerouting priority raw; policy accept;",
}
MAPS = ("filter-forward-in-jumps", "filter-forward-out-jumps", "nat-postrouting-in-jumps",
        "nat-postrouting-out-jumps")


class Docker29Nftables(TwoFamilies):
    """`ip docker-bridges`, and `ip6 docker-bridges` for IPv6 networks (Docker's documents:
    IPv6 rules follow the IPv4 pattern)."""

    name = "docker29-nftables"
    syntax = "nft"

    def _render(self, lab: Lab, host: Host, fam: Family) -> Ruleset:
        proxy = lab.engine.userland_proxy
        ip = fam.nft                      # "ip" or "ip6": the family and the address keyword
        nets = [n for n in bridges(lab, host) if fam.subnet(n)]
        ports = [p for p in published(lab, host)
                 if fam.mode(p.network) != GatewayMode.ISOLATED and fam.port_ip(p)]
        rules: list[RenderedRule] = []

        def add(chain: str, text: str, purpose: P, net=None) -> None:
            rules.append(RenderedRule(TABLE, chain, text, purpose, net.name if net else None))

        add("filter-FORWARD", "oifname vmap @filter-forward-in-jumps", P.DISPATCH)
        add("filter-FORWARD", "iifname vmap @filter-forward-out-jumps", P.DISPATCH)
        add("nat-OUTPUT", (f"{ip} daddr != {'127.0.0.0/8' if ip == 'ip' else '::1'} "
                           if proxy else "") +
            "fib daddr type local counter jump nat-prerouting-and-output", P.DISPATCH)
        add("nat-POSTROUTING", "iifname vmap @nat-postrouting-out-jumps", P.DISPATCH)
        add("nat-POSTROUTING", "oifname vmap @nat-postrouting-in-jumps", P.DISPATCH)
        add("nat-PREROUTING", "fib daddr type local counter jump nat-prerouting-and-output",
            P.DISPATCH)
        for p in ports:
            if fam.mode(p.network) not in NAT_MODES:
                continue
            match = "" if not proxy else f'iifname != "{p.network.device}" '
            if p.host_ip:
                match += f"{ip} daddr {p.host_ip} "
            add("nat-prerouting-and-output", f"{match}{p.proto} dport {p.host_port} counter "
                f'dnat to {fam.endpoint(fam.port_ip(p), p.port)} comment "DNAT"', P.DNAT,
                p.network)
        for ep, n in direct_access_guarded(lab, host, nets, fam):
            add("raw-PREROUTING", f'{ip} daddr {fam.addr(ep)} iifname != "{n.device}" counter '
                'drop comment "DROP DIRECT ACCESS"', P.DIRECT_ACCESS, n)
        for p in ports:
            if p.host_ip and fam.loopback(p.host_ip) and fam.mode(p.network) in NAT_MODES:
                add("raw-PREROUTING", f'iifname != "lo" {ip} daddr {p.host_ip} {p.proto} dport '
                    f'{p.host_port} counter drop comment "DROP REMOTE LOOPBACK"',
                    P.REMOTE_LOOPBACK, p.network)

        for n in nets:
            br = n.device
            fin, fout = f"filter-forward-in__{br}", f"filter-forward-out__{br}"
            pin, pout = f"nat-postrouting-in__{br}", f"nat-postrouting-out__{br}"
            verdict = "accept" if n.icc else "drop"
            add(fin, "ct state established,related counter accept", P.CONNTRACK_ESTABLISHED, n)
            if n.internal:
                add(fin, f'iifname != "{br}" counter drop comment "INTERNAL NETWORK INGRESS"',
                    P.INTERNAL, n)
                add(fin, f'counter {verdict} comment "ICC"', P.ICC, n)
            else:
                if fam.mode(n) == GatewayMode.ROUTED:
                    icmp = "ip protocol icmp" if ip == "ip" else "meta l4proto ipv6-icmp"
                    add(fin, f'{icmp} counter accept comment "ICMP"', P.ROUTED_ICMP, n)
                add(fin, f'iifname "{br}" counter {verdict} comment "ICC"', P.ICC, n)
                if fam.mode(n) == GatewayMode.NAT_UNPROTECTED:
                    add(fin, 'counter accept comment "UNPROTECTED"', P.UNPROTECTED, n)
                else:
                    for p in ports:
                        if p.network is n:
                            add(fin, f"{ip} daddr {fam.port_ip(p)} {p.proto} dport {p.port} "
                                "counter accept",
                                P.PUBLISHED_PORT, n)
                    add(fin, 'counter drop comment "UNPUBLISHED PORT DROP"',
                        P.UNPUBLISHED_PORT_DROP, n)
            add(fout, "ct state established,related counter accept", P.CONNTRACK_ESTABLISHED, n)
            if n.internal:
                add(fout, f'oifname != "{br}" counter drop comment "INTERNAL NETWORK EGRESS"',
                    P.INTERNAL, n)
            else:
                add(fout, 'counter accept comment "OUTGOING"', P.OUTGOING, n)
            nat = not n.internal and fam.mode(n) in NAT_MODES
            if nat and not proxy:
                add(pin, 'fib saddr type local counter masquerade comment "MASQUERADE FROM HOST"',
                    P.HAIRPIN, n)
                for p in ports:
                    if p.network is n:
                        add(pin, f"{ip} saddr {fam.port_ip(p)} {ip} daddr {fam.port_ip(p)} "
                            f"{p.proto} dport {p.port} "
                            'counter masquerade comment "MASQ TO OWN PORT"', P.HAIRPIN, n)
            if nat and n.host_ipv4 and ip == "ip":
                add(pout, f'oifname != "{br}" ip saddr {n.subnet} counter snat to {n.host_ipv4} '
                    'comment "SNAT"', P.SNAT, n)
            elif nat and n.masquerade:
                add(pout, f'oifname != "{br}" {ip} saddr {fam.subnet(n)} counter masquerade '
                    'comment "MASQUERADE"', P.MASQUERADE, n)

        chains = list(BASE_CHAINS) + ["nat-prerouting-and-output"]
        for n in nets:
            chains += [f"{kind}__{n.device}" for kind in ("filter-forward-in", "filter-forward-out",
                                                         "nat-postrouting-in", "nat-postrouting-out")]
        lines = [f"table {ip} {TABLE}", f"delete table {ip} {TABLE}", f"table {ip} {TABLE} {{"]
        for chain in chains:
            spec = BASE_CHAINS.get(chain)
            lines.append(f"\tchain {chain} {{" + (f" {spec}" if spec else "") + " }")
        for m in MAPS:
            prefix = m[:-len("-jumps")]
            elems = ", ".join(f'"{n.device}" : jump {prefix}__{n.device}' for n in nets)
            lines.append(f"\tmap {m} {{ type ifname : verdict;" +
                         (f" elements = {{ {elems} }}" if elems else "") + " }")
        lines.append("}")
        lines += [f"add rule {ip} {TABLE} {r.chain} {r.text}" for r in rules]
        return Ruleset("nft", "\n".join(lines) + "\n", rules)

    def load(self, lab: Lab, host: Host, ruleset: Ruleset) -> list[FwRule]:
        netns.run(host.netns, ["nft", "-f", "-"], input=ruleset.document)
        if ruleset.ipv6 is not None:
            netns.run(host.netns, ["nft", "-f", "-"], input=ruleset.ipv6.document)
        return self.read(lab, host, ruleset)

    def listing(self, host: Host) -> tuple[str, str]:
        from nettrace.topology.firewall.saved import dump
        text = netns.run(host.netns, ["nft", "list", "table", "ip", TABLE], check=False).stdout
        users = dump(host.netns)                  # the lab's own iptables entries, if any
        return f"nft list table ip {TABLE}", text.rstrip() + (
            "\n" + users if "-A " in users else "")

    def read(self, lab: Lab, host: Host, ruleset: Ruleset) -> list[FwRule]:
        # the lab's own entries are iptables commands: index those tables too (user rules)
        rules = index.read_nft_table(host.name, host.netns, "ip", TABLE, ruleset.rules)
        if ruleset.ipv6 is not None:
            rules += index.read_nft_table(host.name, host.netns, "ip6", TABLE, ruleset.ipv6.rules)
        return rules + index.read_iptables(host.name, host.netns, [])
